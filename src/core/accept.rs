//! Acceptor-side negotiation after a GSSENCRequest: the one-byte answer and
//! the security-context handshake, as a state machine over byte buffers.

use super::context::{Granted, SecurityContext};
use super::frame::{ZeroOnDrop, FrameDecoder, MAX_HANDSHAKE_PACKET_SIZE, MAX_PACKET_SIZE};
use super::handshake::{count_round, Outbox};
use super::negotiate::NegotiationStatus;
use crate::error::{Error, ErrorKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Handshake,
    Established,
    Declined,
    Failed,
}

/// The acceptor side of GSSAPI encryption negotiation, started once the
/// client's GSSENCRequest has been read.
///
/// The client sends nothing between its GSSENCRequest and the server's
/// answer, and nothing between a token and the server's reply to it; bytes
/// that arrive at those points are rejected, never delivered.
pub struct Acceptance<C: SecurityContext> {
    context: C,
    state: State,
    output: Outbox,
    decoder: FrameDecoder,
    rounds: usize,
    granted: Granted,
}

impl<C: SecurityContext> Acceptance<C> {
    /// Queues the answer to GSSENCRequest: 'G' to go ahead, or 'N' to
    /// decline, after which the client continues in plaintext.
    pub fn new(context: C, accept: bool) -> Self {
        Acceptance {
            context,
            state: if accept { State::Handshake } else { State::Declined },
            output: Outbox::new(&[if accept { b'G' } else { b'N' }]),
            decoder: FrameDecoder::new(MAX_HANDSHAKE_PACKET_SIZE, "handshake"),
            rounds: 0,
            granted: Granted::default(),
        }
    }

    pub fn status(&self) -> NegotiationStatus {
        match self.state {
            State::Failed => NegotiationStatus::Failed,
            _ if !self.output.is_drained() => NegotiationStatus::WantWrite,
            State::Handshake => NegotiationStatus::WantRead,
            State::Established => NegotiationStatus::Established,
            State::Declined => NegotiationStatus::Declined,
        }
    }

    pub fn output(&self) -> &[u8] {
        self.output.pending()
    }

    pub fn consume_output(&mut self, sent: usize) {
        self.output.consume(sent);
    }

    pub fn wanted(&self) -> usize {
        match self.state {
            State::Handshake => self.decoder.missing().unwrap_or(0),
            _ => 0,
        }
    }

    pub fn context(&self) -> &C {
        &self.context
    }

    pub fn context_mut(&mut self) -> &mut C {
        &mut self.context
    }

    pub fn granted(&self) -> Granted {
        self.granted
    }

    /// Processes bytes received from the client.
    pub fn receive(&mut self, data: &[u8]) -> Result<(), Error> {
        if data.is_empty() && self.state != State::Failed {
            return Ok(());
        }
        let result = match self.state {
            State::Handshake => self.receive_handshake(data),
            State::Failed => Err(Error::invalid_state("GSSAPI negotiation already failed")),
            State::Established | State::Declined => Err(self.early_bytes(data.len())),
        };
        if result.is_err() {
            self.fail();
        }
        result
    }

    pub fn receive_eof(&mut self) -> Error {
        let during = if self.decoder.buffered() > 0 {
            "receiving a GSSAPI handshake token (the token is truncated)"
        } else {
            "waiting for a GSSAPI handshake token"
        };
        self.fail();
        Error::new(ErrorKind::UnexpectedEof, format!("client closed the connection unexpectedly while {during}"))
    }

    /// Ends an established negotiation, returning the context and a decoder
    /// bound to the packet-layer limit.
    pub fn into_established(mut self) -> Result<(C, FrameDecoder, Granted), Error> {
        if self.status() != NegotiationStatus::Established {
            return Err(Error::invalid_state("GSSAPI negotiation is not complete"));
        }
        let mut decoder = std::mem::replace(&mut self.decoder, FrameDecoder::new(0, ""));
        decoder.set_max_packet_size(MAX_PACKET_SIZE, "data");
        Ok((self.context, decoder, self.granted))
    }

    fn receive_handshake(&mut self, data: &[u8]) -> Result<(), Error> {
        if !self.output.is_drained() {
            return Err(self.early_bytes(data.len()));
        }
        self.decoder.push(data);
        let Some(range) = self.decoder.next_packet()? else {
            return Ok(());
        };
        let token = ZeroOnDrop::from_slice(self.decoder.bytes(range));
        self.step(&token)?;

        // A client waits for the reply to each token, so bytes after it were
        // sent before the client could know the outcome: a pipelined
        // StartupMessage or injected plaintext. The one exception is a
        // context that completed with no reply token (a client that did not
        // request mutual authentication): that client is done and may send
        // encrypted packets at once, which the packet layer then unwraps and
        // verifies like any other.
        let no_reply = self.state == State::Established && self.output.is_drained();
        if self.decoder.buffered() > 0 && !no_reply {
            return Err(self.early_bytes(self.decoder.buffered()));
        }
        Ok(())
    }

    fn step(&mut self, token: &[u8]) -> Result<(), Error> {
        count_round(&mut self.rounds)?;
        let step = self.context.step(Some(token))?;
        if !step.token.is_empty() {
            self.output.push_token(&step.token)?;
        }

        if let Some(granted) = step.complete {
            check_acceptor_granted(granted)?;
            self.granted = granted;
            self.state = State::Established;
        }
        Ok(())
    }

    fn early_bytes(&self, count: usize) -> Error {
        Error::new(
            ErrorKind::PlaintextInjection,
            format!(
                "received {count} bytes from the client before the GSSAPI handshake allowed it to send any \
                 (a pipelined message or injected plaintext); they were discarded and the connection is closed"
            ),
        )
    }

    fn fail(&mut self) {
        self.state = State::Failed;
        self.decoder.clear();
        self.output.clear();
    }
}

/// The acceptor needs confidentiality and integrity; mutual authentication
/// is the client's to request and check.
fn check_acceptor_granted(granted: Granted) -> Result<(), Error> {
    let mut missing = Vec::new();
    if !granted.confidentiality {
        missing.push("confidentiality");
    }
    if !granted.integrity {
        missing.push("integrity");
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::ServicesNotGranted,
        format!(
            "GSSAPI security context was established without {}; the connection is closed",
            missing.join(" and ")
        ),
    ))
}
