//go:build !pggssenc_pkgconfig

package pggssenc

// Links the library that `cargo build --release` writes to
// ../target/release. That file's soname is libpggssenc.so.0, which cargo
// does not create, so the dynamic loader finds the library through the
// link lib/libpggssenc.so.0 that run-tests creates (or through
// ../target/release once a link of that name exists there). Build with the
// pggssenc_pkgconfig tag to link an installed copy instead (see
// link_pkgconfig.go).

/*
#cgo CFLAGS: -I${SRCDIR}/../include
#cgo LDFLAGS: -L${SRCDIR}/../target/release -Wl,-rpath,${SRCDIR}/lib -Wl,-rpath,${SRCDIR}/../target/release -lpggssenc
*/
import "C"
