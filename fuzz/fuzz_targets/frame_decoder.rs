//! Fuzzes `FrameDecoder`: arbitrary bytes arrive through `push` and through
//! `spare`/`commit` in arbitrary chunks, packets are taken with `next_packet`,
//! the buffer may be released between reads, and the limit may drop to the
//! packet-layer size midway, as it does when a handshake ends, which must
//! zero every byte but the unread ones. Every result is compared with a
//! reference parser that reads the whole stream at once.
//!
//! Input layout: byte 0 selects the packet limit (0: 16384, 1: 65536,
//! otherwise 5 plus the next two bytes as a big-endian number). Each later
//! operation is one byte for the kind and one byte for a length, followed by
//! that many data bytes where the kind carries data. Kinds modulo 5: 0 push,
//! 1 spare and commit, 2 take every complete packet, 3 lower the limit to
//! 16384, 4 `release_if_empty`.

#![no_main]

mod common;

use common::{take_byte, take_bytes};
use libfuzzer_sys::fuzz_target;
use pggssenc::core::frame::{FrameDecoder, LENGTH_WORD_SIZE, MAX_PACKET_SIZE};
use pggssenc::ErrorKind;

/// Result that the reference parser expects from `next_packet`.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Incomplete,
    Packet(Vec<u8>),
    Error(ErrorKind),
}

/// The stream as one flat buffer, with the offset of the first byte not yet
/// returned as part of a packet.
struct Reference {
    stream: Vec<u8>,
    consumed: usize,
    limit: usize,
}

impl Reference {
    fn available(&self) -> &[u8] {
        &self.stream[self.consumed..]
    }

    fn token_length(&self) -> Result<Option<usize>, ErrorKind> {
        let available = self.available();
        if available.len() < LENGTH_WORD_SIZE {
            return Ok(None);
        }
        let length = u32::from_be_bytes([available[0], available[1], available[2], available[3]]) as usize;
        if length == 0 {
            return Err(ErrorKind::EmptyPacket);
        }
        if length > self.limit - LENGTH_WORD_SIZE {
            return Err(ErrorKind::PacketTooLarge);
        }
        Ok(Some(length))
    }

    fn missing(&self) -> Result<usize, ErrorKind> {
        match self.token_length()? {
            None => Ok(LENGTH_WORD_SIZE - self.available().len()),
            Some(length) => Ok((LENGTH_WORD_SIZE + length).saturating_sub(self.available().len())),
        }
    }

    fn next_packet(&mut self) -> Expected {
        let length = match self.token_length() {
            Err(kind) => return Expected::Error(kind),
            Ok(None) => return Expected::Incomplete,
            Ok(Some(length)) => length,
        };
        if self.available().len() < LENGTH_WORD_SIZE + length {
            return Expected::Incomplete;
        }
        let start = self.consumed + LENGTH_WORD_SIZE;
        let token = self.stream[start..start + length].to_vec();
        self.consumed = start + length;
        Expected::Packet(token)
    }
}

fn select_limit(data: &mut &[u8]) -> Option<usize> {
    match take_byte(data)? {
        0 => Some(16384),
        1 => Some(65536),
        _ => {
            let high = take_byte(data)? as usize;
            let low = take_byte(data)? as usize;
            // A limit must leave room for the length word and one byte.
            Some(LENGTH_WORD_SIZE + 1 + ((high << 8) | low))
        }
    }
}

/// Checks `buffered` and `missing` against the reference. Returns false once
/// the stream has failed, after which the library discards the decoder.
fn check_state(decoder: &FrameDecoder, reference: &Reference) -> bool {
    assert_eq!(decoder.buffered(), reference.available().len(), "buffered byte count");
    match (decoder.missing(), reference.missing()) {
        (Ok(actual), Ok(expected)) => {
            assert_eq!(actual, expected, "missing byte count");
            true
        }
        (Err(err), Err(kind)) => {
            assert_eq!(err.kind(), kind, "missing() error kind");
            false
        }
        (actual, expected) => panic!("missing(): decoder {actual:?}, reference {expected:?}"),
    }
}

/// Takes every complete packet. Returns false once the stream has failed.
fn drain(decoder: &mut FrameDecoder, reference: &mut Reference) -> bool {
    loop {
        let expected = reference.next_packet();
        let actual = match decoder.next_packet() {
            Ok(None) => Expected::Incomplete,
            Ok(Some(range)) => {
                let token = decoder.bytes(range.clone()).to_vec();
                assert!(!token.is_empty(), "a packet of length 0 was returned");
                assert!(token.len() + LENGTH_WORD_SIZE <= reference.limit, "a packet over the limit was returned");
                Expected::Packet(token)
            }
            Err(err) => {
                let message = err.message();
                assert!(!message.chars().any(char::is_control), "control character in {message:?}");
                Expected::Error(err.kind())
            }
        };
        assert_eq!(actual, expected, "next_packet()");
        match actual {
            Expected::Packet(_) => continue,
            Expected::Incomplete => return true,
            Expected::Error(_) => return false,
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let Some(limit) = select_limit(&mut data) else {
        return;
    };
    let mut decoder = FrameDecoder::new(limit, "handshake");
    let mut reference = Reference { stream: Vec::new(), consumed: 0, limit };

    while let Some(kind) = take_byte(&mut data) {
        let length = take_byte(&mut data).unwrap_or(0) as usize;
        match kind % 5 {
            0 => {
                let chunk = take_bytes(&mut data, length);
                decoder.push(chunk);
                reference.stream.extend_from_slice(chunk);
            }
            1 => {
                // Space for `length` bytes, of which only those the input
                // still has are written and committed, as a short recv does.
                let chunk = take_bytes(&mut data, length);
                let spare = decoder.spare(length);
                assert!(spare.len() >= length, "spare() returned {} bytes for {length}", spare.len());
                spare[..chunk.len()].copy_from_slice(chunk);
                decoder.commit(chunk.len());
                reference.stream.extend_from_slice(chunk);
            }
            2 => {
                if !drain(&mut decoder, &mut reference) {
                    return;
                }
            }
            3 => {
                decoder.set_max_packet_size(MAX_PACKET_SIZE, "data");
                reference.limit = MAX_PACKET_SIZE;
                // Handshake tokens must not stay behind in the buffer that
                // the packet layer inherits.
                let (buffer, unread) = decoder.raw_parts();
                assert!(buffer[..unread.start].iter().all(|&byte| byte == 0), "bytes before the unread ones not zeroed");
                assert!(buffer[unread.end..].iter().all(|&byte| byte == 0), "bytes after the unread ones not zeroed");
            }
            _ => {
                // Frees the buffer only when no unread byte is left, which
                // check_state below confirms.
                decoder.release_if_empty();
            }
        }
        if !check_state(&decoder, &reference) {
            return;
        }
    }

    if !drain(&mut decoder, &mut reference) {
        return;
    }
    assert_eq!(decoder.buffered(), reference.available().len(), "bytes left after the last packet");
    decoder.clear();
    assert_eq!(decoder.buffered(), 0, "buffered after clear()");
    assert_eq!(decoder.missing().expect("empty decoder"), LENGTH_WORD_SIZE, "missing after clear()");
});
