# pggssenc: build, demo, tests.
#
#   make demo    install what is missing, build, run the example client
#                against a throwaway KDC and PostgreSQL server
#   make test    install what is missing, build, run every test suite
#   make header  refresh include/pggssenc.h from the Rust sources
#
# Every target that needs system packages runs scripts/ensure-deps first;
# it installs only what is missing.

CARGO ?= cargo
FIXTURE := tests/fixture/pgkrb
RELEASE_LIB := target/release/libpggssenc.so

.PHONY: all deps build header demo test test-rust test-c clean

all: build

deps:
	@scripts/ensure-deps

build: deps
	$(CARGO) build --release --locked
	$(MAKE) -C examples
	$(MAKE) -C ctests

# The header is generated into cargo's OUT_DIR; this copies the newest one.
header: deps
	$(CARGO) build --release --locked
	cp "$$(ls -t target/release/build/pggssenc-*/out/pggssenc.h | head -n 1)" include/pggssenc.h

demo: build
	$(FIXTURE) run -- examples/demo.sh

test: build
	$(MAKE) test-rust
	$(MAKE) test-c

test-rust:
	$(CARGO) test --release --locked

test-c:
	$(FIXTURE) run -- ctests/run-all

clean:
	$(CARGO) clean
	-$(MAKE) -C examples clean
	-$(MAKE) -C ctests clean
