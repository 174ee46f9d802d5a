//! Fuzzes the packet layer after the handshake (`Session`) with a
//! transparent security context: a token is one flag byte and the
//! plaintext, where flag 1 means "confidential", 0 "integrity only", and
//! any other value fails to verify. Arbitrary bytes arrive in arbitrary
//! segments, reads use buffers of arbitrary sizes, and writes meet a
//! transport that accepts arbitrary amounts or would block.
//!
//! Properties checked against a reference decoder of the whole stream:
//! - reads deliver exactly the plaintext of the valid packets, in order,
//!   and nothing of the first invalid packet or anything after it;
//! - the first invalid packet ends the stream with its own error kind, once
//!   all plaintext before it was delivered, and every later call fails;
//! - a would-block read happens only when every complete packet received so
//!   far has been delivered;
//! - written plaintext arrives, packet by packet, as valid tokens of at
//!   most `MAX_PACKET_SIZE` bytes, and the retry rule holds.
//!
//! Input layout: byte 0 sets the context's maximum plaintext per packet
//! (1 to 255, or the protocol maximum for 0). Operations follow, each one
//! kind byte and one length byte. Kind 0 queues a received segment of that
//! many bytes, 1 reads into a buffer of length+1 bytes, 2 writes that many
//! bytes with a send capacity of 64 times the next byte, 3 ends the
//! received stream.

#![no_main]

mod common;

use common::{take_byte, take_bytes};
use libfuzzer_sys::fuzz_target;
use pggssenc::core::frame::{FrameDecoder, LENGTH_WORD_SIZE, MAX_PACKET_SIZE};
use pggssenc::core::{SecurityContext, Session, Step};
use pggssenc::{Error, ErrorKind};
use std::collections::VecDeque;
use std::io;

struct TransparentContext {
    max_plaintext: usize,
}

impl SecurityContext for TransparentContext {
    fn step(&mut self, _input: Option<&[u8]>) -> Result<Step, Error> {
        Err(Error::new(ErrorKind::InvalidState, "the session target never runs a handshake"))
    }

    fn wrap(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        out.push(1);
        out.extend_from_slice(plaintext);
        Ok(())
    }

    fn unwrap(&mut self, token: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        match token.split_first() {
            Some((1, plaintext)) => {
                out.extend_from_slice(plaintext);
                Ok(())
            }
            Some((0, _)) => Err(Error::new(ErrorKind::NoConfidentiality, "integrity-only test token")),
            _ => Err(Error::new(ErrorKind::Gss, "test token does not verify")),
        }
    }

    fn max_plaintext(&mut self, max_token_size: usize) -> Result<usize, Error> {
        Ok(self.max_plaintext.min(max_token_size - 1))
    }
}

/// Decoded form of the whole received stream.
struct Reference {
    /// Plaintext of the valid packets before the first invalid one.
    plaintext: Vec<u8>,
    /// Plaintext of the valid complete packets in the bytes received so far.
    complete_plaintext: usize,
    /// The error of the first invalid packet, if it is complete enough to judge.
    error: Option<ErrorKind>,
    /// Whether the stream ends exactly after a packet.
    ends_on_boundary: bool,
}

fn decode(stream: &[u8]) -> Reference {
    let mut reference =
        Reference { plaintext: Vec::new(), complete_plaintext: 0, error: None, ends_on_boundary: true };
    let mut rest = stream;
    while !rest.is_empty() {
        if rest.len() < LENGTH_WORD_SIZE {
            reference.ends_on_boundary = false;
            break;
        }
        let length = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if length == 0 {
            reference.error = Some(ErrorKind::EmptyPacket);
            break;
        }
        if length > MAX_PACKET_SIZE - LENGTH_WORD_SIZE {
            reference.error = Some(ErrorKind::PacketTooLarge);
            break;
        }
        if rest.len() < LENGTH_WORD_SIZE + length {
            reference.ends_on_boundary = false;
            break;
        }
        let token = &rest[LENGTH_WORD_SIZE..LENGTH_WORD_SIZE + length];
        match token[0] {
            1 => reference.plaintext.extend_from_slice(&token[1..]),
            0 => {
                reference.error = Some(ErrorKind::NoConfidentiality);
                break;
            }
            _ => {
                reference.error = Some(ErrorKind::Gss);
                break;
            }
        }
        reference.complete_plaintext = reference.plaintext.len();
        rest = &rest[LENGTH_WORD_SIZE + length..];
    }
    reference
}

/// Splits what the session sent into tokens and unwraps them.
fn sent_plaintext(sent: &[u8]) -> Vec<u8> {
    let mut plaintext = Vec::new();
    let mut rest = sent;
    while !rest.is_empty() {
        assert!(rest.len() >= LENGTH_WORD_SIZE, "sent bytes end inside a length word");
        let length = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        assert!(length > 0, "sent packet of length 0");
        assert!(length + LENGTH_WORD_SIZE <= MAX_PACKET_SIZE, "sent packet of length {length}");
        assert!(rest.len() >= LENGTH_WORD_SIZE + length, "sent bytes end inside a packet");
        let token = &rest[LENGTH_WORD_SIZE..LENGTH_WORD_SIZE + length];
        assert_eq!(token[0], 1, "sent token without the confidentiality flag");
        plaintext.extend_from_slice(&token[1..]);
        rest = &rest[LENGTH_WORD_SIZE + length..];
    }
    plaintext
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let Some(limit) = take_byte(&mut data) else {
        return;
    };
    let max_plaintext = if limit == 0 { usize::MAX } else { limit as usize };
    let context = TransparentContext { max_plaintext };
    let mut session = Session::new(context, FrameDecoder::new(MAX_PACKET_SIZE, "data"), "server").expect("session");

    let mut segments: VecDeque<Vec<u8>> = VecDeque::new();
    let mut received: Vec<u8> = Vec::new();
    let mut eof = false;
    let mut delivered: Vec<u8> = Vec::new();
    let mut failed: Option<ErrorKind> = None;
    // A write can find the stream failed before a read has reported why:
    // the read that met the invalid packet delivered plaintext first and
    // left the error for the next read.
    let mut write_failed = false;

    let mut unsent: Vec<u8> = Vec::new();
    let mut written: Vec<u8> = Vec::new();
    let mut sent: Vec<u8> = Vec::new();

    while let Some(kind) = take_byte(&mut data) {
        let length = take_byte(&mut data).unwrap_or(0) as usize;
        match kind % 4 {
            0 => {
                let segment = take_bytes(&mut data, length);
                if !segment.is_empty() && !eof {
                    segments.push_back(segment.to_vec());
                }
            }
            1 => {
                let mut out = vec![0xA5u8; length + 1];
                let result = session.read_with(&mut out, |buf| match segments.front_mut() {
                    None if eof => Ok(0),
                    None => Err(io::ErrorKind::WouldBlock.into()),
                    Some(segment) => {
                        let count = segment.len().min(buf.len());
                        buf[..count].copy_from_slice(&segment[..count]);
                        received.extend_from_slice(&segment[..count]);
                        segment.drain(..count);
                        if segment.is_empty() {
                            segments.pop_front();
                        }
                        Ok(count)
                    }
                });
                let reference = decode(&received);
                match result {
                    Ok(count) => {
                        assert!(failed.is_none() || count > 0, "read returned 0 after a failure");
                        assert!(out[count..].iter().all(|&b| b == 0xA5), "read wrote past its count");
                        if count == 0 {
                            assert!(eof, "read returned 0 before the end of the stream");
                            assert!(segments.is_empty(), "read returned 0 with segments left");
                            assert!(reference.ends_on_boundary, "read returned 0 inside a packet");
                            assert!(reference.error.is_none(), "read returned 0 instead of an error");
                            assert_eq!(delivered.len(), reference.plaintext.len(), "0 before all plaintext");
                        }
                        delivered.extend_from_slice(&out[..count]);
                        assert!(reference.plaintext.starts_with(&delivered), "delivered bytes differ from the plaintext");
                    }
                    Err(err) if err.kind() == ErrorKind::WouldBlock => {
                        assert!(segments.is_empty(), "would block with segments to receive");
                        assert!(!eof, "would block after the end of the stream");
                        assert!(reference.error.is_none(), "would block instead of failing");
                        assert_eq!(delivered.len(), reference.complete_plaintext, "would block with plaintext ready");
                    }
                    Err(err) => {
                        let message = err.message();
                        assert!(!message.chars().any(char::is_control), "control character in {message:?}");
                        if failed.is_some() {
                            assert_eq!(err.kind(), ErrorKind::InvalidState, "error after the stream failed");
                        } else {
                            let expected = reference.error.unwrap_or(ErrorKind::UnexpectedEof);
                            assert_eq!(err.kind(), expected, "error kind");
                            if expected == ErrorKind::UnexpectedEof {
                                assert!(eof, "unexpected EOF before the end of the stream");
                                assert!(!reference.ends_on_boundary, "unexpected EOF without a truncated packet");
                            }
                            assert_eq!(delivered, reference.plaintext, "plaintext delivered before the error");
                            failed = Some(err.kind());
                        }
                    }
                }
            }
            2 => {
                let chunk = take_bytes(&mut data, length);
                let mut capacity = take_byte(&mut data).unwrap_or(0) as usize * 64;
                unsent.extend_from_slice(chunk);
                let result = session.write_with(&unsent, |buf| {
                    if capacity == 0 {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    let count = capacity.min(buf.len());
                    sent.extend_from_slice(&buf[..count]);
                    capacity -= count;
                    Ok(count)
                });
                match result {
                    Ok(count) => {
                        assert!(count <= unsent.len(), "wrote more than offered");
                        written.extend_from_slice(&unsent[..count]);
                        unsent.drain(..count);
                    }
                    Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                    Err(err) => {
                        // A read may have met an invalid packet and left its
                        // error for the next read, because it had delivered
                        // plaintext. The stream is failed in both directions.
                        let stream_failed = failed.is_some() || decode(&received).error.is_some();
                        assert!(
                            stream_failed && err.kind() == ErrorKind::InvalidState,
                            "write failed on a usable session: {err}"
                        );
                        write_failed = true;
                    }
                }
                // Plaintext reported as written has left completely.
                let arrived = sent_plaintext_prefix(&sent);
                assert!(arrived.starts_with(&written), "reported bytes did not all arrive");
            }
            _ => eof = true,
        }
    }

    // Flush what the caller still offers, with an unlimited transport.
    let usable = failed.is_none() && !write_failed && decode(&received).error.is_none();
    if usable && !unsent.is_empty() {
        let count = session
            .write_with(&unsent, |buf| {
                sent.extend_from_slice(buf);
                Ok(buf.len())
            })
            .expect("final write");
        assert_eq!(count, unsent.len(), "final write count");
        written.extend_from_slice(&unsent);
    }
    if usable {
        assert_eq!(sent_plaintext(&sent), written, "sent packets carry the written plaintext");
    }
});

/// Unwraps the complete packets at the start of `sent`.
fn sent_plaintext_prefix(sent: &[u8]) -> Vec<u8> {
    let mut end = 0;
    let mut rest = sent;
    while rest.len() >= LENGTH_WORD_SIZE {
        let length = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() < LENGTH_WORD_SIZE + length {
            break;
        }
        end += LENGTH_WORD_SIZE + length;
        rest = &rest[LENGTH_WORD_SIZE + length..];
    }
    sent_plaintext(&sent[..end])
}
