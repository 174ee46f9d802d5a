//! Fuzzes the acceptor's startup-packet parser: `parse_startup` and
//! `startup_missing` on arbitrary bytes and on every prefix of them, the way
//! the acceptor calls them while a packet arrives piece by piece.
//!
//! Properties checked:
//! - a complete packet has a length from 8 to 10000 that equals its length
//!   word, and the fixed length of its kind;
//! - an incomplete packet reports at least one missing byte;
//! - the verdict of a prefix does not change once the bytes that decide it
//!   are present;
//! - no error message contains a control character.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pggssenc::core::startup::{
    parse_startup, startup_missing, StartupKind, CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, MAX_STARTUP_PACKET_SIZE,
    SSL_REQUEST_CODE,
};
use pggssenc::ErrorKind;

/// The verdict on a prefix, for comparing prefixes with each other.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Incomplete,
    Complete(StartupKind, usize),
    Rejected(String),
}

fn verdict(bytes: &[u8]) -> Verdict {
    match parse_startup(bytes) {
        Ok(None) => Verdict::Incomplete,
        Ok(Some((kind, length))) => Verdict::Complete(kind, length),
        Err(err) => {
            assert_eq!(err.kind(), ErrorKind::InvalidStartupPacket, "error kind for {bytes:?}");
            let message = err.message().to_string();
            assert!(!message.chars().any(char::is_control), "control character in {message:?}");
            Verdict::Rejected(message)
        }
    }
}

fn check_one(bytes: &[u8]) -> Verdict {
    let result = verdict(bytes);
    match &result {
        Verdict::Complete(kind, length) => {
            let word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            assert_eq!(*length, word, "packet length and length word");
            assert!((8..=MAX_STARTUP_PACKET_SIZE).contains(length), "length {length}");
            assert!(*length <= bytes.len(), "complete packet longer than the input");
            let code = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            match kind {
                StartupKind::GssEncRequest => assert_eq!((code, *length), (GSSENC_REQUEST_CODE, 8)),
                StartupKind::SslRequest => assert_eq!((code, *length), (SSL_REQUEST_CODE, 8)),
                StartupKind::CancelRequest => assert_eq!((code, *length), (CANCEL_REQUEST_CODE, 16)),
                StartupKind::StartupMessage => assert_eq!(code >> 16, 3, "protocol major version"),
            }
        }
        Verdict::Incomplete => {
            let missing = startup_missing(bytes);
            assert!(missing > 0, "incomplete packet but nothing missing: {bytes:?}");
            assert!(bytes.len() + missing <= MAX_STARTUP_PACKET_SIZE, "missing count past the maximum");
        }
        Verdict::Rejected(_) => {}
    }
    result
}

fuzz_target!(|bytes: &[u8]| {
    let full = check_one(bytes);

    // Prefixes: once a prefix is rejected or complete, every longer prefix
    // gets the same verdict, because the parser decides on the bytes it has.
    let mut decided: Option<Verdict> = None;
    for end in 0..=bytes.len().min(64) {
        let result = check_one(&bytes[..end]);
        if let Some(previous) = &decided {
            assert_eq!(&result, previous, "verdict changed at prefix {end}");
        } else if result != Verdict::Incomplete {
            decided = Some(result);
        }
    }
    if let Some(previous) = decided {
        assert_eq!(full, previous, "verdict of the whole input");
    }
});
