//! Pieces that both sides of the negotiation share: the queue of bytes for
//! the peer and the bound on handshake steps.

use super::frame::{ZeroOnDrop, LENGTH_WORD_SIZE, MAX_HANDSHAKE_PACKET_SIZE};
use crate::error::{Error, ErrorKind};

/// Upper bound on handshake steps. Kerberos needs two, so the bound only
/// stops a peer that keeps sending continuation tokens.
pub const MAX_HANDSHAKE_ROUNDS: usize = 16;

/// Bytes queued for the peer during negotiation: GSSENCRequest or the
/// one-byte response, then handshake packets. They are zeroed once sent.
pub(crate) struct Outbox {
    bytes: ZeroOnDrop,
    sent: usize,
}

impl Outbox {
    pub(crate) fn new(first: &[u8]) -> Self {
        Outbox { bytes: ZeroOnDrop::from_slice(first), sent: 0 }
    }

    /// Returns the bytes not yet sent.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    pub(crate) fn is_drained(&self) -> bool {
        self.sent == self.bytes.len()
    }

    /// Records that the first `sent` pending bytes left, and zeroes the
    /// queue once all of them have.
    pub(crate) fn consume(&mut self, sent: usize) {
        assert!(sent <= self.pending().len(), "consumed more output than was queued");
        self.sent += sent;
        if self.is_drained() {
            self.clear();
        }
    }

    /// Queues `token` as one handshake packet, rejecting a token that does
    /// not fit the protocol's packet limit.
    pub(crate) fn push_token(&mut self, token: &[u8]) -> Result<(), Error> {
        if token.len() > MAX_HANDSHAKE_PACKET_SIZE - LENGTH_WORD_SIZE {
            return Err(Error::new(
                ErrorKind::PacketTooLarge,
                format!(
                    "GSSAPI produced a handshake token of {} bytes, over the protocol maximum of {} including \
                     the length word",
                    token.len(),
                    MAX_HANDSHAKE_PACKET_SIZE
                ),
            ));
        }
        self.bytes.push_packet(token);
        Ok(())
    }

    /// Zeroes and drops every queued byte, sent or not.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.sent = 0;
    }
}

/// Counts one handshake step in `rounds`, failing once the count passes
/// [`MAX_HANDSHAKE_ROUNDS`].
pub(crate) fn count_round(rounds: &mut usize) -> Result<(), Error> {
    *rounds += 1;
    if *rounds > MAX_HANDSHAKE_ROUNDS {
        return Err(Error::new(
            ErrorKind::TooManyRounds,
            format!("GSSAPI handshake did not complete within {MAX_HANDSHAKE_ROUNDS} steps"),
        ));
    }
    Ok(())
}
