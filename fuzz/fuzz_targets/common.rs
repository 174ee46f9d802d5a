//! Input readers and checks that several fuzz targets share. Each target
//! includes this file with `mod common;`, and it is not a target itself.

#![allow(dead_code)]

use pggssenc::core::frame::{LENGTH_WORD_SIZE, MAX_HANDSHAKE_PACKET_SIZE};
use pggssenc::Error;

/// Takes one byte, or `None` at the end of the input.
pub fn take_byte(data: &mut &[u8]) -> Option<u8> {
    let (&first, rest) = data.split_first()?;
    *data = rest;
    Some(first)
}

/// Takes up to `count` bytes.
pub fn take_bytes<'a>(data: &mut &'a [u8], count: usize) -> &'a [u8] {
    let count = count.min(data.len());
    let (taken, rest) = data.split_at(count);
    *data = rest;
    taken
}

/// Fails when an error message contains a control character, which could
/// be a terminal escape sequence from the peer.
pub fn assert_clean_message(err: &Error) {
    let message = err.message();
    assert!(!message.chars().any(char::is_control), "control character in {message:?}");
}

/// Splits a handshake stream into complete, valid frames. Stops at the
/// first incomplete or invalid one.
pub fn complete_frames(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut rest = stream;
    while rest.len() >= LENGTH_WORD_SIZE {
        let length = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if length == 0 || length > MAX_HANDSHAKE_PACKET_SIZE - LENGTH_WORD_SIZE || rest.len() < LENGTH_WORD_SIZE + length {
            break;
        }
        frames.push(rest[LENGTH_WORD_SIZE..LENGTH_WORD_SIZE + length].to_vec());
        rest = &rest[LENGTH_WORD_SIZE + length..];
    }
    frames
}
