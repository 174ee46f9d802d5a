//! Generates the C header with cbindgen into OUT_DIR. The checked-in copy at
//! include/pggssenc.h is compared with it by the header test; the build never
//! writes into the source tree.

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set by cargo"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));

    // The soname carries the ABI major version, so that programs linked
    // against libpggssenc.so.0 keep loading any 0.x.y build.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpggssenc.so.{}", abi_version());

    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=src");

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml must be a valid cbindgen configuration");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed to generate the C header");
    bindings.write_to_file(out_dir.join("pggssenc.h"));
}

/// The ABI version in the soname: the crate's major version. The C ABI only
/// grows within one major version; removing or changing a function needs a
/// new major version.
fn abi_version() -> String {
    env::var("CARGO_PKG_VERSION_MAJOR").expect("CARGO_PKG_VERSION_MAJOR is set by cargo")
}
