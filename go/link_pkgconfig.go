//go:build pggssenc_pkgconfig

package pggssenc

// Links an installed libpggssenc found through pkg-config (pggssenc.pc,
// written by `make install`). Set PKG_CONFIG_PATH when the prefix is not
// on pkg-config's default search path, and LD_LIBRARY_PATH or an rpath in
// CGO_LDFLAGS when the library is not in a directory the dynamic linker
// searches.

/*
#cgo pkg-config: pggssenc
*/
import "C"
