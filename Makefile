# pggssenc: build, demo, tests.
#
#   make demo    install what is missing, build, run the example client
#                against a throwaway KDC and PostgreSQL server
#   make test    install what is missing, build, run every test suite
#   make bench   benchmarks against libpq (docs/BENCHMARKS.md)
#   make soak    long-running cycle and thread tests
#   make fuzz    longer fuzzing runs (FUZZ_SECONDS per target)
#   make header  refresh include/pggssenc.h from the Rust sources
#
# Every target that needs system packages runs scripts/ensure-deps first;
# it installs only what is missing.

CARGO ?= cargo
FIXTURE := tests/fixture/pgkrb
RELEASE_LIB := target/release/libpggssenc.so

PREFIX ?= /usr/local
DESTDIR ?=
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
ABI_VERSION := $(firstword $(subst ., ,$(VERSION)))
LIBDIR := $(DESTDIR)$(PREFIX)/lib
INCLUDEDIR := $(DESTDIR)$(PREFIX)/include
PKGCONFIGDIR := $(LIBDIR)/pkgconfig

.PHONY: all deps build header demo test test-rust test-c test-python test-go test-proxy test-hostile \
	test-sanitizers test-fuzz test-packaging bench soak fuzz install uninstall clean

all: build

deps:
	@scripts/ensure-deps

# The library's soname is libpggssenc.so.$(ABI_VERSION); cargo writes only
# libpggssenc.so, so a link under the soname lets programs linked against
# target/release load it.
build: deps
	$(CARGO) build --release --locked
	ln -sf libpggssenc.so target/release/libpggssenc.so.$(ABI_VERSION)
	$(MAKE) -C examples
	$(MAKE) -C ctests

# The header is generated into cargo's OUT_DIR; this copies the newest one.
header: deps
	$(CARGO) build --release --locked
	cp "$$(ls -t target/release/build/pggssenc-*/out/pggssenc.h | head -n 1)" include/pggssenc.h

demo: build
	$(FIXTURE) run -- examples/demo.sh

FUZZ_SECONDS ?= 600

# Each suite runs even when an earlier one failed, so one run shows every
# failure; the target fails if any suite did.
TEST_SUITES := test-rust test-c test-packaging test-python test-go test-proxy test-hostile \
	test-sanitizers test-fuzz

test: build
	@failed=""; \
	for suite in $(TEST_SUITES); do \
		echo "== $$suite"; \
		$(MAKE) --no-print-directory $$suite || failed="$$failed $$suite"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: failed suites:$$failed" >&2; exit 1; fi; \
	echo "make test: all suites passed"

test-rust:
	$(CARGO) test --release --locked

test-c:
	$(FIXTURE) run -- ctests/run-all

test-packaging:
	tests/packaging/run

test-python:
	python/run-tests

test-go:
	go/run-tests

test-proxy:
	$(MAKE) -C examples/proxy
	$(FIXTURE) run -- tests/proxy/run

test-hostile:
	$(MAKE) -C tests/hostile
	$(FIXTURE) run -- tests/hostile/run

test-sanitizers:
	tests/hostile/run-sanitizers

test-fuzz:
	fuzz/run-smoke

bench: deps
	bench/run

soak: build
	$(FIXTURE) run -- tests/soak/run

fuzz: deps
	fuzz/run-long $(FUZZ_SECONDS)

# Installs the shared library as libpggssenc.so.VERSION with the soname
# link libpggssenc.so.ABI and the development link libpggssenc.so, the
# static library, the header and pggssenc.pc.
install:
	@test -f $(RELEASE_LIB) || { echo "make install: $(RELEASE_LIB) is missing; run make build first" >&2; exit 1; }
	install -d $(LIBDIR) $(INCLUDEDIR) $(PKGCONFIGDIR)
	install -m 755 $(RELEASE_LIB) $(LIBDIR)/libpggssenc.so.$(VERSION)
	ln -sf libpggssenc.so.$(VERSION) $(LIBDIR)/libpggssenc.so.$(ABI_VERSION)
	ln -sf libpggssenc.so.$(ABI_VERSION) $(LIBDIR)/libpggssenc.so
	install -m 644 target/release/libpggssenc.a $(LIBDIR)/libpggssenc.a
	install -m 644 include/pggssenc.h $(INCLUDEDIR)/pggssenc.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' pggssenc.pc.in > $(PKGCONFIGDIR)/pggssenc.pc

uninstall:
	rm -f $(LIBDIR)/libpggssenc.so.$(VERSION) $(LIBDIR)/libpggssenc.so.$(ABI_VERSION) \
	      $(LIBDIR)/libpggssenc.so $(LIBDIR)/libpggssenc.a \
	      $(INCLUDEDIR)/pggssenc.h $(PKGCONFIGDIR)/pggssenc.pc

clean:
	$(CARGO) clean
	-$(MAKE) -C examples clean
	-$(MAKE) -C ctests clean
