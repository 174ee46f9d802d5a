//! Unit tests of the sans-IO core, driven by the test mechanism.

use super::frame::{encode_packet, FrameDecoder, GSSENC_REQUEST, MAX_HANDSHAKE_PACKET_SIZE, MAX_PACKET_SIZE};
use super::negotiate::{Negotiation, NegotiationStatus, MAX_HANDSHAKE_ROUNDS};
use super::session::Session;
use super::testing::{self, client_token, open_stream, packet, server_token, TestContext};
use crate::error::ErrorKind;
use std::io;

fn framed(token: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_packet(token, &mut out);
    out
}

/// A negotiation that has sent its GSSENCRequest.
fn requested(server_rounds: usize) -> Negotiation<TestContext> {
    let mut negotiation = Negotiation::new(TestContext::new(server_rounds));
    assert_eq!(negotiation.status(), NegotiationStatus::WantWrite);
    assert_eq!(negotiation.output(), GSSENC_REQUEST);
    negotiation.consume_output(GSSENC_REQUEST.len());
    assert_eq!(negotiation.status(), NegotiationStatus::WantRead);
    negotiation
}

/// A negotiation that has received 'G' and sent its first token.
fn accepted(server_rounds: usize) -> Negotiation<TestContext> {
    let mut negotiation = requested(server_rounds);
    negotiation.receive(b"G").unwrap();
    assert_eq!(negotiation.output(), framed(&client_token(1)));
    let length = negotiation.output().len();
    negotiation.consume_output(length);
    negotiation
}

fn established_session() -> Session<TestContext> {
    let mut negotiation = accepted(1);
    negotiation.receive(&framed(&server_token(1))).unwrap();
    let (context, decoder, _) = negotiation.into_established().unwrap();
    Session::new(context, decoder, "server").unwrap()
}

#[test]
fn gssenc_request_bytes() {
    assert_eq!(GSSENC_REQUEST, [0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x30]);
    assert_eq!(u32::from_be_bytes(GSSENC_REQUEST[4..].try_into().unwrap()), 80877104);
}

#[test]
fn every_response_byte() {
    for byte in 0..=255u8 {
        let mut negotiation = requested(1);
        let result = negotiation.receive(&[byte]);
        match byte {
            b'G' => {
                assert!(result.is_ok());
                assert_eq!(negotiation.status(), NegotiationStatus::WantWrite);
                assert_eq!(negotiation.output(), framed(&client_token(1)));
            }
            b'N' => {
                assert!(result.is_ok());
                assert_eq!(negotiation.status(), NegotiationStatus::Declined);
                assert!(negotiation.output().is_empty());
            }
            b'E' => {
                let err = result.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::ServerErrorResponse);
                assert!(err.message().starts_with("server answered GSSENCRequest with an error response; its text was not read"));
                assert_eq!(negotiation.status(), NegotiationStatus::Failed);
            }
            _ => {
                let err = result.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::UnexpectedResponse, "byte {byte}");
                let described = if byte.is_ascii_graphic() {
                    format!("byte 0x{byte:02x} ('{}')", byte as char)
                } else {
                    format!("byte 0x{byte:02x}")
                };
                assert_eq!(
                    err.message(),
                    format!("received invalid response to GSSENCRequest: {described}; expected 'G', 'N' or 'E'")
                );
                assert_eq!(negotiation.status(), NegotiationStatus::Failed);
            }
        }
    }
}

#[test]
fn bytes_after_g_are_injection() {
    let mut negotiation = requested(1);
    let err = negotiation.receive(b"GQ\0\0\0\x10SELECT").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PlaintextInjection);
    assert!(err.message().starts_with("received 11 unencrypted bytes after the server accepted GSSENCRequest"));
    assert_eq!(negotiation.status(), NegotiationStatus::Failed);
    assert!(negotiation.output().is_empty(), "no token may be sent after an injection");
}

#[test]
fn bytes_after_n_are_rejected() {
    let mut negotiation = requested(1);
    let err = negotiation.receive(b"NR").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PlaintextInjection);
    assert_eq!(negotiation.status(), NegotiationStatus::Failed);
}

#[test]
fn eof_after_request() {
    let mut negotiation = requested(1);
    let err = negotiation.receive_eof();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
    assert_eq!(err.message(), "server closed the connection unexpectedly while waiting for the response to GSSENCRequest");
}

#[test]
fn eof_in_truncated_token() {
    let mut negotiation = accepted(1);
    let frame = framed(&server_token(1));
    negotiation.receive(&frame[..frame.len() - 1]).unwrap();
    let err = negotiation.receive_eof();
    assert_eq!(
        err.message(),
        "server closed the connection unexpectedly while receiving a GSSAPI handshake token (the token is truncated)"
    );
}

#[test]
fn handshake_split_at_every_offset() {
    let frame = framed(&server_token(1));
    for split in 0..=frame.len() {
        let mut negotiation = accepted(1);
        negotiation.receive(&frame[..split]).unwrap();
        if split < frame.len() {
            assert_eq!(negotiation.status(), NegotiationStatus::WantRead, "split {split}");
            assert_eq!(negotiation.wanted(), if split < 4 { 4 - split } else { frame.len() - split });
        }
        negotiation.receive(&frame[split..]).unwrap();
        assert_eq!(negotiation.status(), NegotiationStatus::Established, "split {split}");
    }
}

#[test]
fn handshake_one_byte_at_a_time_over_rounds() {
    let mut negotiation = accepted(3);
    for round in 1..=3 {
        for byte in framed(&server_token(round)) {
            negotiation.receive(&[byte]).unwrap();
        }
        if round < 3 {
            assert_eq!(negotiation.output(), framed(&client_token(round + 1)));
            let length = negotiation.output().len();
            negotiation.consume_output(length);
        }
    }
    assert_eq!(negotiation.status(), NegotiationStatus::Established);
}

#[test]
fn handshake_length_limits() {
    let max_token = MAX_HANDSHAKE_PACKET_SIZE - 4;
    let cases: [(u32, Option<ErrorKind>); 6] = [
        (0, Some(ErrorKind::EmptyPacket)),
        (max_token as u32 - 3, None),
        (max_token as u32, None),
        (max_token as u32 + 1, Some(ErrorKind::PacketTooLarge)),
        (MAX_HANDSHAKE_PACKET_SIZE as u32, Some(ErrorKind::PacketTooLarge)),
        (0x7fff_ffff, Some(ErrorKind::PacketTooLarge)),
    ];
    for (length, expected) in cases {
        let mut negotiation = accepted(1);
        let result = negotiation.receive(&length.to_be_bytes());
        match expected {
            None => {
                assert!(result.is_ok(), "length {length}");
                assert_eq!(negotiation.wanted(), length as usize);
            }
            Some(kind) => {
                let err = result.unwrap_err();
                assert_eq!(err.kind(), kind, "length {length}");
                assert_eq!(negotiation.status(), NegotiationStatus::Failed);
            }
        }
    }

    let mut negotiation = accepted(1);
    let err = negotiation.receive(&0x7fff_ffffu32.to_be_bytes()).unwrap_err();
    assert_eq!(
        err.message(),
        "received a GSSAPI handshake packet of 2147483651 bytes including the length word, over the maximum of \
         65536; the connection is closed without reading it"
    );
}

#[test]
fn handshake_round_limit() {
    let mut negotiation = accepted(1000);
    let mut result = Ok(());
    for round in 1..=MAX_HANDSHAKE_ROUNDS {
        result = negotiation.receive(&framed(&server_token(round)));
        if result.is_err() {
            break;
        }
        let length = negotiation.output().len();
        negotiation.consume_output(length);
    }
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooManyRounds);
    assert_eq!(err.message(), "GSSAPI handshake did not complete within 16 steps");
}

#[test]
fn handshake_without_mutual_authentication_fails() {
    let mut context = TestContext::new(1);
    context.granted.mutual_authentication = false;
    context.granted.confidentiality = false;
    let mut negotiation = Negotiation::new(context);
    negotiation.consume_output(8);
    negotiation.receive(b"G").unwrap();
    negotiation.consume_output(negotiation.output().len());
    let err = negotiation.receive(&framed(&server_token(1))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ServicesNotGranted);
    assert_eq!(
        err.message(),
        "GSSAPI security context was established without mutual authentication and confidentiality; the \
         connection is closed"
    );
}

#[test]
fn bytes_after_last_token_go_to_session() {
    let mut negotiation = accepted(1);
    let mut bytes = framed(&server_token(1));
    bytes.extend(packet(b"hello", true));
    negotiation.receive(&bytes).unwrap();
    let (context, decoder, _) = negotiation.into_established().unwrap();
    let mut session = Session::new(context, decoder, "server").unwrap();
    let mut out = [0u8; 16];
    let n = session.decrypt(&mut out).unwrap();
    assert_eq!(&out[..n], b"hello");
}

/// Writes everything through `send`, retrying on would-block, and returns
/// the bytes that reached the transport.
fn write_all(session: &mut Session<TestContext>, data: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut written = 0;
    while written < data.len() {
        let n = session
            .write_with(&data[written..], |bytes| {
                wire.extend_from_slice(bytes);
                Ok(bytes.len())
            })
            .unwrap();
        written += n;
    }
    wire
}

#[test]
fn writes_split_at_packet_limit() {
    let max = established_session().max_plaintext();
    assert_eq!(max, MAX_PACKET_SIZE - 4 - testing::OVERHEAD);
    for size in [1, max - 1, max, max + 1, 2 * max, 1 << 20] {
        let mut session = established_session();
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let wire = write_all(&mut session, &data);
        let (plaintext, sizes) = open_stream(&wire);
        assert_eq!(plaintext, data, "size {size}");
        assert_eq!(sizes.len(), size.div_ceil(max), "size {size}");
        assert!(sizes.iter().all(|&s| s <= MAX_PACKET_SIZE), "size {size}: {sizes:?}");
        if size >= max {
            assert_eq!(sizes[0], MAX_PACKET_SIZE, "a full chunk fills a packet exactly");
        }
    }
}

#[test]
fn retransmit_contract_one_byte_then_would_block() {
    let mut session = established_session();
    let data: Vec<u8> = (0..40_000).map(|i| (i % 256) as u8).collect();
    let mut wire = Vec::new();
    let mut accept_next = true;
    let mut written = 0;
    let mut calls = 0;

    while written < data.len() {
        calls += 1;
        assert!(calls < 1_000_000, "write made no progress");
        let result = session.write_with(&data[written..], |bytes| {
            if accept_next {
                accept_next = false;
                wire.push(bytes[0]);
                Ok(1)
            } else {
                accept_next = true;
                Err(io::Error::from(io::ErrorKind::WouldBlock))
            }
        });
        match result {
            Ok(n) => {
                assert!(n > 0);
                written += n;
                let (plaintext, _) = open_stream(&wire);
                assert_eq!(plaintext.len(), written, "only plaintext whose packets left is reported");
            }
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::WouldBlock);
                assert!(session.unacknowledged() > 0);
            }
        }
    }
    assert_eq!(open_stream(&wire).0, data);
    assert_eq!(session.unacknowledged(), 0);
}

#[test]
fn retry_with_fewer_bytes_is_an_error() {
    let mut session = established_session();
    let data = vec![7u8; 100];
    let err = session.write_with(&data, |_| Err(io::Error::from(io::ErrorKind::WouldBlock))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    assert_eq!(session.unacknowledged(), 100);
    let err = session.write_with(&data[..99], |bytes| Ok(bytes.len())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RetryTooShort);
    assert_eq!(
        err.message(),
        "write retried with 99 bytes, but 100 bytes were already encrypted and queued; offer the same data again"
    );
}

/// Feeds `stream` to `read_with` in the chunks given by `cuts`, collecting
/// all plaintext until end of stream.
fn read_in_chunks(session: &mut Session<TestContext>, stream: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    for &cut in cuts {
        chunks.push(&stream[start..cut]);
        start = cut;
    }
    chunks.push(&stream[start..]);
    let mut chunks = chunks.into_iter().filter(|c| !c.is_empty()).collect::<Vec<_>>().into_iter();

    let mut plaintext = Vec::new();
    let mut pending: &[u8] = &[];
    loop {
        let mut out = [0u8; 4096];
        let n = session
            .read_with(&mut out, |buf| {
                if pending.is_empty() {
                    pending = chunks.next().unwrap_or(&[]);
                }
                let n = pending.len().min(buf.len());
                buf[..n].copy_from_slice(&pending[..n]);
                pending = &pending[n..];
                Ok(n)
            })
            .unwrap();
        if n == 0 {
            return plaintext;
        }
        plaintext.extend_from_slice(&out[..n]);
    }
}

#[test]
fn frames_split_across_reads_at_every_offset() {
    let mut stream = packet(b"first packet", true);
    stream.extend(packet(b"second", true));
    for cut in 0..=stream.len() {
        let mut session = established_session();
        assert_eq!(read_in_chunks(&mut session, &stream, &[cut]), b"first packetsecond", "cut {cut}");
    }
    let mut session = established_session();
    let every_byte: Vec<usize> = (1..stream.len()).collect();
    assert_eq!(read_in_chunks(&mut session, &stream, &every_byte), b"first packetsecond");
}

#[test]
fn reads_packets_of_maximum_size() {
    let mut session = established_session();
    let max = session.max_plaintext();
    let data: Vec<u8> = (0..3 * max + 5).map(|i| (i % 253) as u8).collect();
    let mut stream = Vec::new();
    for chunk in data.chunks(max) {
        stream.extend(packet(chunk, true));
    }
    assert_eq!(read_in_chunks(&mut session, &stream, &[]), data);
}

#[test]
fn oversize_packet_rejected_before_allocation() {
    for length in [MAX_PACKET_SIZE as u32 - 3, 0x7fff_ffff] {
        let mut session = established_session();
        session.feed(&length.to_be_bytes()).unwrap();
        let mut out = [0u8; 16];
        let err = session.decrypt(&mut out).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PacketTooLarge);
        assert_eq!(session.pending_received(), 0);
    }
    let mut session = established_session();
    session.feed(&(MAX_PACKET_SIZE as u32 - 4).to_be_bytes()).unwrap();
    assert_eq!(session.wanted().unwrap(), MAX_PACKET_SIZE - 4);
}

#[test]
fn packet_without_confidentiality_is_not_delivered() {
    let mut session = established_session();
    let mut stream = packet(b"secret", false);
    stream.extend(packet(b"after", true));
    session.feed(&stream).unwrap();
    let mut out = [0u8; 64];
    let err = session.decrypt(&mut out).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoConfidentiality);
    assert_eq!(out, [0u8; 64]);
    let err = session.decrypt(&mut out).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    assert!(err.message().starts_with("the encrypted connection failed earlier and cannot be used"));
}

#[test]
fn zero_length_packet_rejected() {
    let mut session = established_session();
    session.feed(&[0, 0, 0, 0]).unwrap();
    let err = session.decrypt(&mut [0u8; 8]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EmptyPacket);
    assert_eq!(err.message(), "received a GSSAPI data packet of length 0; the connection is closed");
}

#[test]
fn eof_between_packets_and_inside_one() {
    let mut session = established_session();
    let stream = packet(b"complete", true);
    assert_eq!(read_in_chunks(&mut session, &stream, &[3]), b"complete");

    let mut session = established_session();
    let mut delivered = false;
    let err = session
        .read_with(&mut [0u8; 64], |buf| {
            if delivered {
                return Ok(0);
            }
            delivered = true;
            buf[..5].copy_from_slice(&stream[..5]);
            Ok(5)
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
    assert_eq!(
        err.message(),
        "server closed the connection unexpectedly while receiving a GSSAPI-encrypted packet (the packet is truncated)"
    );
}

#[test]
fn read_would_block_keeps_partial_packet() {
    let mut session = established_session();
    let stream = packet(b"later", true);
    let mut delivered = false;
    let err = session
        .read_with(&mut [0u8; 64], |buf| {
            if delivered {
                return Err(io::Error::from(io::ErrorKind::WouldBlock));
            }
            delivered = true;
            buf[..6].copy_from_slice(&stream[..6]);
            Ok(6)
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    assert_eq!(session.pending_received(), 6);

    let mut out = [0u8; 64];
    let n = session
        .read_with(&mut out, |buf| {
            buf[..stream.len() - 6].copy_from_slice(&stream[6..]);
            Ok(stream.len() - 6)
        })
        .unwrap();
    assert_eq!(&out[..n], b"later");
}

#[test]
fn decoder_grows_only_after_length_check() {
    let mut decoder = FrameDecoder::new(MAX_PACKET_SIZE, "data");
    decoder.push(&[0x00, 0x01, 0x00, 0x00]);
    assert_eq!(decoder.missing().unwrap_err().kind(), ErrorKind::PacketTooLarge);
    assert_eq!(decoder.buffered(), 4);
}

#[test]
fn complete_packets_count_as_pending() {
    let mut session = established_session();
    let mut stream = packet(&[1u8; 100], true);
    let second = packet(&[2u8; 100], true);
    stream.extend_from_slice(&second[..10]);
    session.feed(&stream).unwrap();
    assert_eq!(session.pending_complete_packets(), stream.len());

    let mut out = [0u8; 100];
    assert_eq!(session.decrypt(&mut out).unwrap(), 100);
    assert_eq!(session.pending_plaintext(), 0);
    assert_eq!(session.pending_complete_packets(), 0, "a partial packet needs the transport");

    session.feed(&second[10..]).unwrap();
    assert_eq!(session.pending_complete_packets(), second.len());
    session.feed(&0x7fff_ffffu32.to_be_bytes()).unwrap();
    assert_eq!(session.decrypt(&mut out).unwrap(), 100);
    assert_eq!(session.pending_complete_packets(), 1, "an invalid length is reported without I/O");
}

#[test]
fn error_after_valid_packet_is_reported_next_read() {
    let mut session = established_session();
    let mut stream = packet(b"valid", true);
    stream.extend(packet(b"leaked?", false));
    let mut out = [0u8; 64];
    let mut delivered = false;
    let mut receive = |buf: &mut [u8]| {
        if delivered {
            return Ok(0);
        }
        delivered = true;
        buf[..stream.len()].copy_from_slice(&stream);
        Ok(stream.len())
    };
    assert_eq!(session.read_with(&mut out, &mut receive).unwrap(), 5);
    assert_eq!(&out[..5], b"valid");
    assert_eq!(&out[5..], &[0u8; 59], "nothing of the unprotected packet is copied");
    let err = session.read_with(&mut out, &mut receive).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoConfidentiality);
    let err = session.read_with(&mut out, &mut receive).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
}
