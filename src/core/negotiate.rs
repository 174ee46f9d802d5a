//! Client-side negotiation: GSSENCRequest, the server's one-byte response,
//! and the security-context handshake, as a state machine over byte buffers.

use super::context::{Granted, SecurityContext};
use super::frame::{ZeroOnDrop, FrameDecoder, GSSENC_REQUEST, MAX_HANDSHAKE_PACKET_SIZE, MAX_PACKET_SIZE};
use super::handshake::{count_round, Outbox};
use crate::error::{Error, ErrorKind};

pub use super::handshake::MAX_HANDSHAKE_ROUNDS;

/// What the negotiation needs from its caller next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NegotiationStatus {
    /// Bytes are waiting in [`Negotiation::output`]; send them.
    WantWrite,
    /// Receive bytes from the server and pass them to [`Negotiation::receive`].
    WantRead,
    /// The security context is established and all tokens are sent.
    Established,
    /// The server answered 'N'. The socket carries plaintext from here on:
    /// the caller may send its StartupMessage or an SSLRequest.
    Declined,
    /// An error ended the negotiation.
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    AwaitingResponse,
    Handshake,
    Established,
    Declined,
    Failed,
}

/// The client side of GSSENCRequest negotiation.
///
/// Output is queued in an internal buffer; the caller sends it, reports how
/// much left with [`Negotiation::consume_output`], and feeds what the server
/// sends to [`Negotiation::receive`]. No bytes are interpreted as anything
/// but tokens once the server has answered 'G'.
pub struct Negotiation<C: SecurityContext> {
    context: C,
    state: State,
    output: Outbox,
    decoder: FrameDecoder,
    rounds: usize,
    granted: Granted,
}

impl<C: SecurityContext> Negotiation<C> {
    /// Starts a negotiation: queues the GSSENCRequest.
    pub fn new(context: C) -> Self {
        Negotiation {
            context,
            state: State::AwaitingResponse,
            output: Outbox::new(&GSSENC_REQUEST),
            decoder: FrameDecoder::new(MAX_HANDSHAKE_PACKET_SIZE, "handshake"),
            rounds: 0,
            granted: Granted::default(),
        }
    }

    pub fn status(&self) -> NegotiationStatus {
        match self.state {
            State::Failed => NegotiationStatus::Failed,
            _ if !self.output.is_drained() => NegotiationStatus::WantWrite,
            State::AwaitingResponse | State::Handshake => NegotiationStatus::WantRead,
            State::Established => NegotiationStatus::Established,
            State::Declined => NegotiationStatus::Declined,
        }
    }

    /// Bytes queued for the server and not yet sent.
    pub fn output(&self) -> &[u8] {
        self.output.pending()
    }

    /// Records that the first `sent` bytes of [`Negotiation::output`] left.
    pub fn consume_output(&mut self, sent: usize) {
        self.output.consume(sent);
    }

    /// Minimum number of bytes needed to make progress: 1 while waiting for
    /// the response byte, then the rest of the current handshake packet.
    pub fn wanted(&self) -> usize {
        match self.state {
            State::AwaitingResponse => 1,
            State::Handshake => self.decoder.missing().unwrap_or(0),
            _ => 0,
        }
    }

    /// Services granted by the established context.
    pub fn granted(&self) -> Granted {
        self.granted
    }

    pub fn context(&self) -> &C {
        &self.context
    }

    /// Processes bytes received from the server.
    pub fn receive(&mut self, data: &[u8]) -> Result<(), Error> {
        if data.is_empty() && self.state != State::Failed {
            return Ok(());
        }
        let result = match self.state {
            State::AwaitingResponse => self.receive_response(data),
            State::Handshake => self.receive_handshake(data),
            State::Established | State::Declined => Err(Error::new(
                ErrorKind::PlaintextInjection,
                format!(
                    "received {} bytes after GSSAPI negotiation ended, before the caller took over the socket; \
                     they were discarded",
                    data.len()
                ),
            )),
            State::Failed => Err(Error::invalid_state("GSSAPI negotiation already failed")),
        };
        if result.is_err() {
            self.fail();
        }
        result
    }

    /// Reports that the server closed the connection.
    pub fn receive_eof(&mut self) -> Error {
        let during = match self.state {
            State::AwaitingResponse => "waiting for the response to GSSENCRequest",
            State::Handshake if self.decoder.buffered() > 0 => "receiving a GSSAPI handshake token (the token is truncated)",
            State::Handshake => "waiting for a GSSAPI handshake token",
            _ => "negotiating GSSAPI encryption",
        };
        self.fail();
        Error::unexpected_eof("server", during)
    }

    /// Ends an established negotiation, returning the context and a decoder
    /// holding any bytes that followed the last handshake token, now bound
    /// to the packet-layer limit.
    pub fn into_established(mut self) -> Result<(C, FrameDecoder, Granted), Error> {
        if self.status() != NegotiationStatus::Established {
            return Err(Error::invalid_state("GSSAPI negotiation is not complete"));
        }
        let mut decoder = std::mem::replace(&mut self.decoder, FrameDecoder::new(0, ""));
        decoder.set_max_packet_size(MAX_PACKET_SIZE, "data");
        Ok((self.context, decoder, self.granted))
    }

    fn receive_response(&mut self, data: &[u8]) -> Result<(), Error> {
        let Some((&response, rest)) = data.split_first() else {
            return Ok(());
        };

        match response {
            b'G' => {
                // The server sends nothing after 'G' until it has the first
                // token, so anything that came with the 'G' was injected
                // before encryption started.
                if !rest.is_empty() {
                    return Err(Error::new(
                        ErrorKind::PlaintextInjection,
                        format!(
                            "received {} unencrypted bytes after the server accepted GSSENCRequest, before the \
                             GSSAPI handshake began; they were discarded and the connection is closed \
                             (plaintext injection or a broken server)",
                            rest.len()
                        ),
                    ));
                }
                self.state = State::Handshake;
                self.step(None)
            }
            b'N' => {
                if !rest.is_empty() {
                    return Err(Error::new(
                        ErrorKind::PlaintextInjection,
                        format!(
                            "received {} unexpected bytes after the server declined GSSENCRequest; \
                             they were discarded and the connection is closed",
                            rest.len()
                        ),
                    ));
                }
                self.state = State::Declined;
                Ok(())
            }
            b'E' => Err(Error::new(
                ErrorKind::ServerErrorResponse,
                "server answered GSSENCRequest with an error response; its text was not read because the \
                 server is not authenticated yet. The socket is no longer usable. Servers before \
                 PostgreSQL 12 answer this way: with gssencmode=prefer, open a new connection without \
                 GSS encryption",
            )),
            other => Err(Error::new(
                ErrorKind::UnexpectedResponse,
                format!(
                    "received invalid response to GSSENCRequest: {}; expected 'G', 'N' or 'E'",
                    describe_byte(other)
                ),
            )),
        }
    }

    fn receive_handshake(&mut self, data: &[u8]) -> Result<(), Error> {
        self.decoder.push(data);
        while self.state == State::Handshake {
            let Some(range) = self.decoder.next_packet()? else {
                break;
            };
            let token = ZeroOnDrop::from_slice(self.decoder.bytes(range));
            self.step(Some(&token))?;
        }
        Ok(())
    }

    fn step(&mut self, input: Option<&[u8]>) -> Result<(), Error> {
        count_round(&mut self.rounds)?;
        let step = self.context.step(input)?;
        if !step.token.is_empty() {
            self.output.push_token(&step.token)?;
        }

        match step.complete {
            None if step.token.is_empty() && input.is_none() => Err(Error::new(
                ErrorKind::Gss,
                "GSSAPI produced no initial token; the security context cannot start",
            )),
            None => Ok(()),
            Some(granted) => {
                check_granted(granted)?;
                self.granted = granted;
                self.state = State::Established;
                Ok(())
            }
        }
    }

    fn fail(&mut self) {
        self.state = State::Failed;
        self.decoder.clear();
    }
}

/// Verifies that the established context gives what PostgreSQL's GSSAPI
/// encryption relies on: mutual authentication (so the server is who the
/// target name says), confidentiality and integrity.
pub fn check_granted(granted: Granted) -> Result<(), Error> {
    let mut missing = Vec::new();
    if !granted.mutual_authentication {
        missing.push("mutual authentication");
    }
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

/// Renders a byte received from an unauthenticated server for an error
/// message: its hex value, and the character only when it is printable ASCII,
/// so no control sequence reaches a terminal.
pub fn describe_byte(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("byte 0x{byte:02x} ('{}')", byte as char)
    } else {
        format!("byte 0x{byte:02x}")
    }
}
