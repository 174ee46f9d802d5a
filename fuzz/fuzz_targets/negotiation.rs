//! Fuzzes the client negotiation state machine (`Negotiation`) with a
//! scripted security context: arbitrary server bytes arrive in arbitrary
//! chunks, output leaves in arbitrary pieces, and the stream may end at any
//! point. The checks are properties that hold for any server:
//!
//! - the context sees exactly the handshake frames the server sent, in order,
//!   and is stepped at most `MAX_HANDSHAKE_ROUNDS` times;
//! - bytes that arrive with the 'G' or 'N' response, or after the handshake
//!   ended, fail the negotiation with `PlaintextInjection`;
//! - the bytes sent are GSSENCRequest followed by the context's tokens;
//! - "established" requires mutual authentication, confidentiality and
//!   integrity;
//! - a failed negotiation stays failed, and no error message contains a
//!   control character.
//!
//! Input layout: byte 0 gives the script length (modulo 24), then one script
//! byte per context step (see `Action::decode`), then operations of one kind
//! byte and one length byte each: send output, receive a chunk of that many
//! bytes, or end the stream.

#![no_main]

mod common;

use common::{assert_clean_message, complete_frames, take_byte, take_bytes};
use libfuzzer_sys::fuzz_target;
use pggssenc::core::frame::LENGTH_WORD_SIZE;
use pggssenc::core::negotiate::{Negotiation, NegotiationStatus, MAX_HANDSHAKE_ROUNDS};
use pggssenc::core::{Granted, SecurityContext, Step};
use pggssenc::{Error, ErrorKind};

/// What the scripted context does on one step.
#[derive(Clone, Copy, Debug)]
enum Action {
    Fail,
    Continue { token_length: usize },
    Complete { token_length: usize, granted: Granted },
}

impl Action {
    /// Bits 0-1 select the action (0: fail, 1: continue, 2 and 3: complete);
    /// bits 2-4 are the granted services of a completion (mutual
    /// authentication, confidentiality, integrity); bits 5-7 times 3 are the
    /// token length.
    fn decode(byte: u8) -> Action {
        let token_length = (byte >> 5) as usize * 3;
        match byte & 3 {
            0 => Action::Fail,
            1 => Action::Continue { token_length },
            _ => Action::Complete {
                token_length,
                granted: Granted {
                    mutual_authentication: byte & 4 != 0,
                    confidentiality: byte & 8 != 0,
                    integrity: byte & 16 != 0,
                    delegation: false,
                },
            },
        }
    }
}

/// A security context that follows a script and records its inputs and
/// outputs. Past the end of the script it keeps asking to continue, the way
/// a mechanism would under a server that never completes.
struct ScriptedContext {
    script: Vec<Action>,
    inputs: Vec<Option<Vec<u8>>>,
    tokens: Vec<Vec<u8>>,
    completed: Option<Granted>,
}

impl SecurityContext for ScriptedContext {
    fn step(&mut self, input: Option<&[u8]>) -> Result<Step, Error> {
        let index = self.inputs.len();
        self.inputs.push(input.map(<[u8]>::to_vec));
        let action = self.script.get(index).copied().unwrap_or(Action::Continue { token_length: 2 });
        let token_for = |length: usize| vec![index as u8; length];
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

/// Checks what the context saw and produced against what crossed the wire.
fn check_exchange(negotiation: &Negotiation<ScriptedContext>, received: &[u8], sent: &[u8]) {
    let context = negotiation.context();
    assert!(context.inputs.len() <= MAX_HANDSHAKE_ROUNDS, "{} context steps", context.inputs.len());

    // The first step has no input; each later one got the next frame.
    if let Some(first) = context.inputs.first() {
        assert_eq!(received.first(), Some(&b'G'), "context stepped without a 'G' response");
        assert!(first.is_none(), "the first step had an input token");
        let frames = complete_frames(&received[1..]);
        let tokens: Vec<&Vec<u8>> = context.inputs[1..].iter().map(|input| input.as_ref().expect("input")).collect();
        assert!(tokens.len() <= frames.len(), "the context saw more tokens than the server sent");
        for (token, frame) in tokens.iter().zip(&frames) {
            assert_eq!(*token, frame, "token passed to the context");
        }
    }

    // Sent bytes are GSSENCRequest, then each non-empty token as a frame.
    let mut expected = pggssenc::core::GSSENC_REQUEST.to_vec();
    for token in context.tokens.iter().filter(|token| !token.is_empty()) {
        expected.extend_from_slice(&(token.len() as u32).to_be_bytes());
        expected.extend_from_slice(token);
    }
    assert!(expected.starts_with(sent), "sent bytes differ from GSSENCRequest and the context's tokens");
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let Some(script_length) = take_byte(&mut data) else {
        return;
    };
    let script: Vec<Action> = take_bytes(&mut data, script_length as usize % 24).iter().map(|&b| Action::decode(b)).collect();
    let context = ScriptedContext { script, inputs: Vec::new(), tokens: Vec::new(), completed: None };
    let mut negotiation = Negotiation::new(context);

    let mut received = Vec::new();
    let mut sent = Vec::new();
    let mut failed = false;

    while let Some(kind) = take_byte(&mut data) {
        let length = take_byte(&mut data).unwrap_or(0) as usize;
        let before = negotiation.status();
        match kind % 3 {
            0 => {
                let count = length.min(negotiation.output().len());
                sent.extend_from_slice(&negotiation.output()[..count]);
                negotiation.consume_output(count);
            }
            1 => {
                let chunk = take_bytes(&mut data, length);
                let steps_before = negotiation.context().inputs.len();
                let result = negotiation.receive(chunk);
                let awaiting_response = received.is_empty();
                received.extend_from_slice(chunk);
                match result {
                    Ok(()) => {}
                    Err(err) => {
                        assert_clean_message(&err);
                        // A response byte followed by more bytes in the
                        // same chunk is an injection, never a handshake.
                        if awaiting_response && chunk.len() > 1 && matches!(chunk[0], b'G' | b'N') {
                            assert_eq!(err.kind(), ErrorKind::PlaintextInjection, "response with trailing bytes");
                            assert_eq!(negotiation.context().inputs.len(), steps_before, "context stepped");
                        }
                        if matches!(before, NegotiationStatus::Established | NegotiationStatus::Declined)
                            && !chunk.is_empty()
                        {
                            assert_eq!(err.kind(), ErrorKind::PlaintextInjection, "bytes after negotiation");
                        }
                        if err.kind() == ErrorKind::TooManyRounds {
                            assert_eq!(negotiation.context().inputs.len(), MAX_HANDSHAKE_ROUNDS, "steps at the limit");
                        }
                        failed = true;
                    }
                }
            }
            _ => {
                let err = negotiation.receive_eof();
                assert_clean_message(&err);
                assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "receive_eof() error kind");
                failed = true;
            }
        }

        let status = negotiation.status();
        if failed {
            assert_eq!(status, NegotiationStatus::Failed, "status after a failure");
        }
        if status == NegotiationStatus::Established || before == NegotiationStatus::Established {
            let granted = negotiation.granted();
            assert_eq!(negotiation.context().completed, Some(granted), "granted services");
            assert!(
                granted.mutual_authentication && granted.confidentiality && granted.integrity,
                "established without a required service: {granted:?}"
            );
        }
        match status {
            NegotiationStatus::WantRead if received.is_empty() => assert_eq!(negotiation.wanted(), 1),
            NegotiationStatus::Established | NegotiationStatus::Declined | NegotiationStatus::Failed => {
                assert_eq!(negotiation.wanted(), 0, "wanted() after negotiation ended")
            }
            _ => {}
        }
        check_exchange(&negotiation, &received, &sent);
        if failed {
            // A failed negotiation rejects everything after it.
            let err = negotiation.receive(b"G").expect_err("receive() after a failure");
            assert_eq!(err.kind(), ErrorKind::InvalidState, "error kind after a failure");
            assert_eq!(negotiation.status(), NegotiationStatus::Failed, "status after a second receive()");
            return;
        }
    }

    let rest = negotiation.output().to_vec();
    sent.extend_from_slice(&rest);
    negotiation.consume_output(rest.len());
    check_exchange(&negotiation, &received, &sent);

    // Bytes that came behind the last token stay buffered for the packet
    // layer, which limits packets to MAX_PACKET_SIZE.
    if negotiation.status() == NegotiationStatus::Established {
        let consumed: usize = negotiation.context().inputs[1..]
            .iter()
            .map(|input| LENGTH_WORD_SIZE + input.as_ref().map_or(0, Vec::len))
            .sum();
        let (_context, decoder, _granted) = negotiation.into_established().expect("established");
        assert_eq!(decoder.buffered(), received.len() - 1 - consumed, "bytes kept after the last token");
        assert_eq!(decoder.max_packet_size(), pggssenc::core::MAX_PACKET_SIZE, "packet-layer limit");
    }
});
