//! The checked-in C header must equal the one build.rs generates.

#[test]
fn checked_in_header_is_current() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/pggssenc.h"));
    let checked_in = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/pggssenc.h"))
        .expect("include/pggssenc.h exists");
    assert!(
        generated == checked_in,
        "include/pggssenc.h differs from the header cbindgen generates from the Rust sources; \
         refresh it with `make header` (it copies {}/pggssenc.h to include/) and commit it",
        env!("OUT_DIR")
    );
}
