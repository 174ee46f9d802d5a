//! Fuzzes the conninfo parser: `parse_conninfo` on arbitrary text, and
//! `Params::apply_conninfo`, which must keep nothing from an invalid string.
//!
//! Properties checked: parsing never panics; key/value pairs survive a
//! round trip through the quoted `key='value'` form; a string that
//! `apply_conninfo` accepts also resolves; one it rejects leaves the
//! parameters unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pggssenc::config::{parse_conninfo, Params};
use pggssenc::ErrorKind;

/// Writes pairs in the `key='value'` form, escaping quotes and backslashes.
fn quote_pairs(pairs: &[(String, String)]) -> String {
    let mut text = String::new();
    for (key, value) in pairs {
        text.push_str(key);
        text.push_str("='");
        for c in value.chars() {
            if c == '\'' || c == '\\' {
                text.push('\\');
            }
            text.push(c);
        }
        text.push_str("' ");
    }
    text
}

fuzz_target!(|data: &[u8]| {
    let Ok(conninfo) = std::str::from_utf8(data) else {
        return;
    };

    match parse_conninfo(conninfo) {
        Ok(pairs) => {
            // Keys in the key/value form end at '=' or whitespace, so only
            // pairs whose keys have neither can be written back.
            let writable = pairs.iter().all(|(key, _)| !key.is_empty() && !key.chars().any(|c| c == '=' || c.is_whitespace()));
            if writable && !quote_pairs(&pairs).starts_with("postgres") {
                let again = parse_conninfo(&quote_pairs(&pairs)).expect("quoted pairs parse");
                assert_eq!(again, pairs, "round trip through the quoted form");
            }
        }
        Err(err) => assert_eq!(err.kind(), ErrorKind::InvalidParameter, "error kind"),
    }

    let mut params = Params::new();
    params.set("krbsrvname", "postgres").expect("valid parameter");
    let before = params.clone();
    match params.apply_conninfo(conninfo) {
        Ok(()) => {
            params.resolve(|_| None).expect("accepted parameters resolve");
        }
        Err(err) => {
            assert_eq!(err.kind(), ErrorKind::InvalidParameter, "error kind");
            assert_eq!(params, before, "parameters changed by a rejected string");
        }
    }
});
