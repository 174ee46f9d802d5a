//! Fuzzes the acceptor negotiation state machine (`Acceptance`) with a
//! scripted security context: arbitrary client bytes arrive in arbitrary
//! chunks, output leaves in arbitrary pieces, and the stream may end at any
//! point. The checks are properties that hold for any client:
//!
//! - the context receives exactly the handshake frames the client sent, in
//!   order, and is stepped at most `MAX_HANDSHAKE_ROUNDS` times;
//! - bytes that arrive while the 'G' or 'N' response or a reply token is
//!   still unsent, after a decline, or after the handshake ended, fail the
//!   negotiation with `PlaintextInjection` and never reach the context;
//! - bytes behind a token are accepted only when that token completed the
//!   context without a reply, and then they stay buffered for the packet
//!   layer;
//! - the bytes sent are the response byte followed by the context's tokens;
//! - "established" requires confidentiality and integrity;
//! - a failed negotiation stays failed, and no error message contains a
//!   control character.
//!
//! Input layout: bit 0 of byte 0 chooses to accept ('G') or decline ('N').
//! Byte 1 gives the script length (modulo 24), and one script byte per
//! context step follows (see `Action::decode`). The rest are operations of
//! one kind byte and one length byte each: send output, receive a chunk of
//! that many bytes, or end the stream.

#![no_main]

mod common;

use common::{assert_clean_message, complete_frames, take_byte, take_bytes};
use libfuzzer_sys::fuzz_target;
use pggssenc::core::frame::{LENGTH_WORD_SIZE, MAX_PACKET_SIZE};
use pggssenc::core::negotiate::{NegotiationStatus, MAX_HANDSHAKE_ROUNDS};
use pggssenc::core::{Acceptance, Granted, SecurityContext, Step};
use pggssenc::{Error, ErrorKind};

/// The scripted context's behaviour on one step.
#[derive(Clone, Copy, Debug)]
enum Action {
    Fail,
    Continue { token_length: usize },
    Complete { token_length: usize, granted: Granted },
}

impl Action {
    /// Bits 0-1 select the action (0: fail, 1: continue, 2 and 3: complete).
    /// Bits 2-3 are the granted confidentiality and integrity of a
    /// completion. Bits 4-7 times 2 are the token length, so a completion
    /// without a reply token is common.
    fn decode(byte: u8) -> Action {
        let token_length = (byte >> 4) as usize * 2;
        match byte & 3 {
            0 => Action::Fail,
            1 => Action::Continue { token_length },
            _ => Action::Complete {
                token_length,
                granted: Granted {
                    mutual_authentication: true,
                    confidentiality: byte & 4 != 0,
                    integrity: byte & 8 != 0,
                    delegation: false,
                },
            },
        }
    }
}

/// A security context that follows a script and records its inputs and
/// outputs. Past the end of the script it keeps asking to continue, the way
/// a mechanism would under a client that never completes.
struct ScriptedContext {
    script: Vec<Action>,
    inputs: Vec<Vec<u8>>,
    tokens: Vec<Vec<u8>>,
    completed: Option<Granted>,
}

impl SecurityContext for ScriptedContext {
    fn step(&mut self, input: Option<&[u8]>) -> Result<Step, Error> {
        let index = self.inputs.len();
        self.inputs.push(input.expect("an acceptor step always has an input token").to_vec());
        let action = self.script.get(index).copied().unwrap_or(Action::Continue { token_length: 2 });
        let token_for = |length: usize| vec![0x80 | index as u8; length];
        match action {
            Action::Fail => Err(Error::new(ErrorKind::Gss, "scripted GSSAPI failure")),
            Action::Continue { token_length } => {
                let token = token_for(token_length);
                self.tokens.push(token.clone());
                Ok(Step { token, complete: None })
            }
            Action::Complete { token_length, granted } => {
                let token = token_for(token_length);
                self.tokens.push(token.clone());
                self.completed = Some(granted);
                Ok(Step { token, complete: Some(granted) })
            }
        }
    }

    fn wrap(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        out.extend_from_slice(plaintext);
        Ok(())
    }

    fn unwrap(&mut self, token: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        out.extend_from_slice(token);
        Ok(())
    }

    fn max_plaintext(&mut self, max_token_size: usize) -> Result<usize, Error> {
        Ok(max_token_size)
    }
}

/// Number of stream bytes that the context's inputs took, length words
/// included.
fn consumed(context: &ScriptedContext) -> usize {
    context.inputs.iter().map(|input| LENGTH_WORD_SIZE + input.len()).sum()
}

/// Checks what the context saw and produced against what crossed the wire.
fn check_exchange(acceptance: &Acceptance<ScriptedContext>, response: u8, received: &[u8], sent: &[u8]) {
    let context = acceptance.context();
    assert!(context.inputs.len() <= MAX_HANDSHAKE_ROUNDS, "{} context steps", context.inputs.len());

    let frames = complete_frames(received);
    assert!(context.inputs.len() <= frames.len(), "the context saw more tokens than the client sent");
    for (input, frame) in context.inputs.iter().zip(&frames) {
        assert_eq!(input, frame, "token passed to the context");
    }

    let mut expected = vec![response];
    for token in context.tokens.iter().filter(|token| !token.is_empty()) {
        expected.extend_from_slice(&(token.len() as u32).to_be_bytes());
        expected.extend_from_slice(token);
    }
    assert!(expected.starts_with(sent), "sent bytes differ from the response and the context's tokens");
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let Some(flags) = take_byte(&mut data) else {
        return;
    };
    let accept = flags & 1 != 0;
    let response = if accept { b'G' } else { b'N' };
    let Some(script_length) = take_byte(&mut data) else {
        return;
    };
    let script: Vec<Action> = take_bytes(&mut data, script_length as usize % 24).iter().map(|&b| Action::decode(b)).collect();
    let context = ScriptedContext { script, inputs: Vec::new(), tokens: Vec::new(), completed: None };
    let mut acceptance = Acceptance::new(context, accept);

    // Handshake bytes that the acceptance took in, and bytes it sent.
    let mut received = Vec::new();
    let mut sent = Vec::new();
    let mut failed = false;

    while let Some(kind) = take_byte(&mut data) {
        let length = take_byte(&mut data).unwrap_or(0) as usize;
        let before = acceptance.status();
        match kind % 3 {
            0 => {
                let count = length.min(acceptance.output().len());
                sent.extend_from_slice(&acceptance.output()[..count]);
                acceptance.consume_output(count);
            }
            1 => {
                let chunk = take_bytes(&mut data, length);
                let steps_before = acceptance.context().inputs.len();
                let result = acceptance.receive(chunk);
                if !chunk.is_empty() && before != NegotiationStatus::WantRead {
                    // Output still unsent, or negotiation over: the client
                    // had no right to send.
                    let err = result.as_ref().expect_err("bytes accepted while the client had to wait");
                    assert_eq!(err.kind(), ErrorKind::PlaintextInjection, "error kind for early bytes");
                    assert_eq!(acceptance.context().inputs.len(), steps_before, "context stepped on early bytes");
                } else {
                    received.extend_from_slice(chunk);
                }
                match result {
                    Ok(()) => {
                        let unread = received.len() - consumed(acceptance.context());
                        match acceptance.status() {
                            // A reply is due: nothing may wait behind the token.
                            NegotiationStatus::WantWrite => assert_eq!(unread, 0, "bytes behind a token that needs a reply"),
                            // Only part of a frame is buffered.
                            NegotiationStatus::WantRead => {
                                assert!(complete_frames(&received[received.len() - unread..]).is_empty(), "complete frame left unread");
                                assert!(acceptance.wanted() > 0, "wanted() while reading");
                            }
                            _ => {}
                        }
                    }
                    Err(err) => {
                        assert_clean_message(&err);
                        if err.kind() == ErrorKind::TooManyRounds {
                            assert_eq!(acceptance.context().inputs.len(), MAX_HANDSHAKE_ROUNDS, "steps at the limit");
                        }
                        failed = true;
                    }
                }
            }
            _ => {
                let err = acceptance.receive_eof();
                assert_clean_message(&err);
                assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "receive_eof() error kind");
                failed = true;
            }
        }

        let status = acceptance.status();
        if failed {
            assert_eq!(status, NegotiationStatus::Failed, "status after a failure");
        }
        if !accept {
            assert!(acceptance.context().inputs.is_empty(), "a declining acceptor stepped its context");
        }
        if status == NegotiationStatus::Established || before == NegotiationStatus::Established {
            let granted = acceptance.granted();
            assert_eq!(acceptance.context().completed, Some(granted), "granted services");
            assert!(granted.confidentiality, "established without confidentiality: {granted:?}");
            assert!(granted.integrity, "established without integrity: {granted:?}");
        }
        if matches!(status, NegotiationStatus::Established | NegotiationStatus::Declined | NegotiationStatus::Failed) {
            assert_eq!(acceptance.wanted(), 0, "wanted() after negotiation ended");
        }
        check_exchange(&acceptance, response, &received, &sent);
        if failed {
            // A failed negotiation rejects everything after it.
            let err = acceptance.receive(b"\0").expect_err("receive() after a failure");
            assert_eq!(err.kind(), ErrorKind::InvalidState, "error kind after a failure");
            assert_eq!(acceptance.status(), NegotiationStatus::Failed, "status after a second receive()");
            return;
        }
    }

    let rest = acceptance.output().to_vec();
    sent.extend_from_slice(&rest);
    acceptance.consume_output(rest.len());
    check_exchange(&acceptance, response, &received, &sent);

    // Bytes behind a token that completed the context without a reply stay
    // buffered for the packet layer, which limits packets to MAX_PACKET_SIZE.
    if acceptance.status() == NegotiationStatus::Established {
        let unread = received.len() - consumed(acceptance.context());
        if unread > 0 {
            assert!(acceptance.context().tokens.last().is_some_and(Vec::is_empty), "bytes kept behind a reply");
        }
        let (_context, decoder, _granted) = acceptance.into_established().expect("established");
        assert_eq!(decoder.buffered(), unread, "bytes kept after the last token");
        assert_eq!(decoder.max_packet_size(), MAX_PACKET_SIZE, "packet-layer limit");
    }
});
