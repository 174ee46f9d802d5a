//! The packet layer after the handshake: plaintext is wrapped into packets of
//! at most `MAX_PACKET_SIZE` bytes, and received packets are unwrapped and
//! checked for confidentiality before any byte of them is delivered.

use super::context::SecurityContext;
use super::frame::{zero, zero_vec, FrameDecoder, LENGTH_WORD_SIZE, MAX_PACKET_SIZE};
use crate::error::{Error, ErrorKind};
use std::io;

/// Number of packets wrapped ahead of one send, so that a large write leaves
/// in few system calls.
const SEND_BATCH_PACKETS: usize = 4;

/// Bytes requested from the transport per receive: several full packets, so
/// that a stream of packets arrives in few system calls.
const RECEIVE_CHUNK: usize = 4 * MAX_PACKET_SIZE;

/// An established GSSAPI-encrypted stream.
///
/// The write path follows the contract of libpq's pg_GSS_write: a wrapped
/// packet stays queued until it is fully sent; only plaintext whose packets
/// have all left is reported as written; and after a would-block, the caller
/// must offer the unreported bytes again, at least as many as before.
pub struct Session<C: SecurityContext> {
    context: C,
    max_plaintext: usize,
    decoder: FrameDecoder,
    plaintext: Vec<u8>,
    plaintext_read: usize,
    send: Vec<u8>,
    send_sent: usize,
    unacknowledged: usize,
    /// The other side, "server" or "client", as error messages name it.
    peer: &'static str,
    failure: Option<Error>,
    /// An error found after some plaintext was already delivered in the same
    /// read; the next read returns it.
    deferred: Option<Error>,
}

impl<C: SecurityContext> Session<C> {
    /// Starts the packet layer on an established context. `decoder` contains
    /// any bytes received after the last handshake token; `peer` names the
    /// other side ("server" or "client") in error messages.
    pub fn new(mut context: C, decoder: FrameDecoder, peer: &'static str) -> Result<Self, Error> {
        let max_plaintext = context.max_plaintext(MAX_PACKET_SIZE - LENGTH_WORD_SIZE)?;
        if max_plaintext == 0 {
            return Err(Error::new(
                ErrorKind::Gss,
                "GSSAPI reports that no plaintext fits in a packet of the protocol maximum size",
            ));
        }
        Ok(Session {
            context,
            max_plaintext,
            decoder,
            plaintext: Vec::new(),
            plaintext_read: 0,
            send: Vec::new(),
            send_sent: 0,
            unacknowledged: 0,
            peer,
            failure: None,
            deferred: None,
        })
    }

    pub fn context(&self) -> &C {
        &self.context
    }

    /// Largest plaintext carried by one packet.
    pub fn max_plaintext(&self) -> usize {
        self.max_plaintext
    }

    /// Number of decrypted bytes ready to be read without receiving more.
    pub fn pending_plaintext(&self) -> usize {
        self.plaintext.len() - self.plaintext_read
    }

    /// Number of received bytes not yet decrypted.
    pub fn pending_received(&self) -> usize {
        self.decoder.buffered()
    }

    /// Number of received bytes that form at least one complete packet not
    /// yet decrypted (all buffered bytes in that case), or 0. A buffered
    /// packet with an invalid length, or an error left for the next read,
    /// counts as 1 byte, because the next read reports it without touching
    /// the transport.
    pub fn pending_complete_packets(&self) -> usize {
        if self.deferred.is_some() {
            return 1;
        }
        match self.decoder.missing() {
            Ok(0) => self.decoder.buffered(),
            Ok(_) => 0,
            Err(_) => 1,
        }
    }

    /// Number of wrapped bytes queued and not yet sent.
    pub fn pending_send(&self) -> usize {
        self.send.len() - self.send_sent
    }

    /// Plaintext bytes wrapped into queued packets and not yet reported as
    /// written; a retried write must offer at least this many.
    pub fn unacknowledged(&self) -> usize {
        self.unacknowledged
    }

    /// The error that ended the stream, if any.
    pub fn failure(&self) -> Option<&Error> {
        self.failure.as_ref()
    }

    /// Writes `data` through `send`, which has `send(2)` semantics.
    ///
    /// Returns the number of plaintext bytes whose packets have all been
    /// sent, which may be less than `data.len()`. Returns an error of kind
    /// `WouldBlock` when `send` would block before any such byte; the caller
    /// must then call again with the same data (or more) once the transport
    /// is writable.
    pub fn write_with<F>(&mut self, data: &[u8], mut send: F) -> Result<usize, Error>
    where
        F: FnMut(&[u8]) -> io::Result<usize>,
    {
        self.check_usable()?;
        if data.len() < self.unacknowledged {
            return Err(self.record(Error::new(
                ErrorKind::RetryTooShort,
                format!(
                    "write retried with {} bytes, but {} bytes were already encrypted and queued; \
                     offer the same data again",
                    data.len(),
                    self.unacknowledged
                ),
            )));
        }

        let mut reported = 0;
        loop {
            while self.pending_send() > 0 {
                match send(&self.send[self.send_sent..]) {
                    Ok(0) => {
                        return Err(self.record(Error::new(
                            ErrorKind::Io,
                            "could not send data to the server: the transport accepted 0 bytes",
                        )))
                    }
                    Ok(sent) => self.send_sent += sent,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        return if reported > 0 { Ok(reported) } else { Err(would_block()) };
                    }
                    Err(err) => return Err(self.record(Error::io("sending GSSAPI-encrypted data", &err))),
                }
            }

            // Every queued packet has left: its plaintext counts as written.
            reported += self.unacknowledged;
            self.unacknowledged = 0;
            self.send.clear();
            self.send_sent = 0;
            if reported == data.len() {
                // An idle connection keeps no send buffer.
                self.send = Vec::new();
                return Ok(reported);
            }

            if let Err(err) = self.wrap_batch(&data[reported..]) {
                return Err(self.record(err));
            }
        }
    }

    /// Wraps plaintext into queued packets without sending anything, for
    /// callers that move bytes themselves. Returns the number of bytes
    /// wrapped: all of `data`.
    pub fn encrypt(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.check_usable()?;
        for chunk in data.chunks(self.max_plaintext) {
            if let Err(err) = self.wrap_packet(chunk) {
                return Err(self.record(err));
            }
        }
        Ok(data.len())
    }

    /// Queued wrapped bytes, for callers that move bytes themselves.
    pub fn send_buffer(&self) -> &[u8] {
        &self.send[self.send_sent..]
    }

    /// Records that `sent` bytes of [`Session::send_buffer`] left.
    pub fn consume_send(&mut self, sent: usize) {
        assert!(sent <= self.pending_send(), "consumed more than was queued");
        self.send_sent += sent;
        if self.send_sent == self.send.len() {
            self.send.clear();
            self.send_sent = 0;
        }
    }

    /// Reads plaintext into `out` through `receive`, which has `recv(2)`
    /// semantics. Returns 0 on orderly end of stream, and an error of kind
    /// `WouldBlock` when no plaintext is ready and `receive` would block.
    pub fn read_with<F>(&mut self, out: &mut [u8], mut receive: F) -> Result<usize, Error>
    where
        F: FnMut(&mut [u8]) -> io::Result<usize>,
    {
        if let Some(err) = self.deferred.take() {
            return Err(err);
        }
        self.check_usable()?;
        if out.is_empty() {
            return Ok(0);
        }

        loop {
            if self.pending_plaintext() > 0 {
                return Ok(self.copy_plaintext(out));
            }
            let delivered = self.decrypt_into(out)?;
            if delivered > 0 {
                self.decoder.release_if_empty();
                return Ok(delivered);
            }

            let wanted = self.decoder.missing().map_err(|err| self.record(err))?;
            let spare = self.decoder.spare(wanted.max(RECEIVE_CHUNK));
            let result = receive(spare);
            match result {
                Ok(0) => {
                    self.decoder.commit(0);
                    if self.decoder.buffered() > 0 {
                        return Err(self.record(Error::unexpected_eof(
                            self.peer,
                            "receiving a GSSAPI-encrypted packet (the packet is truncated)",
                        )));
                    }
                    return Ok(0);
                }
                Ok(received) => self.decoder.commit(received),
                Err(err) => {
                    self.decoder.commit(0);
                    match err.kind() {
                        io::ErrorKind::Interrupted => continue,
                        io::ErrorKind::WouldBlock => return Err(would_block()),
                        _ => return Err(self.record(Error::io("receiving GSSAPI-encrypted data", &err))),
                    }
                }
            }
        }
    }

    /// Adds bytes received from the transport, for callers that move bytes
    /// themselves.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), Error> {
        self.check_usable()?;
        self.decoder.push(data);
        Ok(())
    }

    /// Decrypts buffered packets into `out`, for callers that move bytes
    /// themselves. Returns 0 when no complete packet is buffered.
    pub fn decrypt(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        self.check_usable()?;
        loop {
            if self.pending_plaintext() > 0 || out.is_empty() {
                return Ok(self.copy_plaintext(out));
            }
            if !self.decrypt_next()? {
                return Ok(0);
            }
        }
    }

    /// Number of bytes still missing for the next packet.
    pub fn wanted(&self) -> Result<usize, Error> {
        self.decoder.missing()
    }

    /// Unwraps complete buffered packets in place and copies their plaintext
    /// into `out`, as many as fit; the rest of a packet that does not fit is
    /// kept for the next read. Returns the number of bytes delivered, 0 when
    /// no complete packet is buffered.
    fn decrypt_into(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        let mut delivered = 0;
        while delivered < out.len() {
            let range = match self.decoder.next_packet() {
                Ok(Some(range)) => range,
                Ok(None) => break,
                Err(err) => return self.fail_after(delivered, err),
            };

            let token = self.decoder.bytes_mut(range);
            let plain = match self.context.unwrap_in_place(token) {
                Ok(plain) => plain,
                Err(err) => {
                    zero(token);
                    return self.fail_after(delivered, err);
                }
            };

            let plaintext = &mut token[plain];
            let count = plaintext.len().min(out.len() - delivered);
            out[delivered..delivered + count].copy_from_slice(&plaintext[..count]);
            delivered += count;
            if count < plaintext.len() {
                zero_vec(&mut self.plaintext);
                self.plaintext.extend_from_slice(&plaintext[count..]);
                self.plaintext_read = 0;
            }
            zero(plaintext);
        }
        Ok(delivered)
    }

    /// Ends the stream with `err`. When earlier packets of the same read were
    /// already delivered, returns their byte count and leaves the error for
    /// the next read, so that verified plaintext is not reported as failed.
    fn fail_after(&mut self, delivered: usize, err: Error) -> Result<usize, Error> {
        let err = self.record(err);
        if delivered == 0 {
            return Err(err);
        }
        self.deferred = Some(err);
        Ok(delivered)
    }

    /// Unwraps the next complete buffered packet into the plaintext buffer.
    /// Returns false when no complete packet is buffered.
    fn decrypt_next(&mut self) -> Result<bool, Error> {
        let range = match self.decoder.next_packet() {
            Ok(Some(range)) => range,
            Ok(None) => return Ok(false),
            Err(err) => return Err(self.record(err)),
        };

        zero_vec(&mut self.plaintext);
        self.plaintext_read = 0;
        let token = self.decoder.bytes(range);
        if let Err(err) = self.context.unwrap(token, &mut self.plaintext) {
            zero_vec(&mut self.plaintext);
            return Err(self.record(err));
        }
        Ok(true)
    }

    fn copy_plaintext(&mut self, out: &mut [u8]) -> usize {
        let available = &mut self.plaintext[self.plaintext_read..];
        let count = available.len().min(out.len());
        out[..count].copy_from_slice(&available[..count]);
        zero(&mut available[..count]);
        self.plaintext_read += count;
        if self.plaintext_read == self.plaintext.len() {
            // Every byte was zeroed as it was copied out.
            self.plaintext = Vec::new();
            self.plaintext_read = 0;
        }
        count
    }

    fn wrap_batch(&mut self, data: &[u8]) -> Result<(), Error> {
        for chunk in data.chunks(self.max_plaintext).take(SEND_BATCH_PACKETS) {
            self.wrap_packet(chunk)?;
            self.unacknowledged += chunk.len();
        }
        Ok(())
    }

    /// Wraps one chunk of at most `max_plaintext` bytes into the send buffer:
    /// a length word, patched once the token size is known, then the token.
    fn wrap_packet(&mut self, chunk: &[u8]) -> Result<(), Error> {
        debug_assert!(chunk.len() <= self.max_plaintext);
        let word_at = self.send.len();
        self.send.extend_from_slice(&[0; LENGTH_WORD_SIZE]);
        if let Err(err) = self.context.wrap(chunk, &mut self.send) {
            self.send.truncate(word_at);
            return Err(err);
        }

        let token_length = self.send.len() - word_at - LENGTH_WORD_SIZE;
        if token_length > MAX_PACKET_SIZE - LENGTH_WORD_SIZE {
            self.send.truncate(word_at);
            return Err(Error::new(
                ErrorKind::PacketTooLarge,
                format!(
                    "GSSAPI wrapped {} plaintext bytes into {} bytes, over the packet maximum of {} \
                     including the length word",
                    chunk.len(),
                    token_length,
                    MAX_PACKET_SIZE
                ),
            ));
        }
        self.send[word_at..word_at + LENGTH_WORD_SIZE].copy_from_slice(&(token_length as u32).to_be_bytes());
        Ok(())
    }

    fn check_usable(&self) -> Result<(), Error> {
        match &self.failure {
            None => Ok(()),
            Some(err) => Err(Error::new(
                ErrorKind::InvalidState,
                format!("the encrypted connection failed earlier and cannot be used: {err}"),
            )),
        }
    }

    /// Makes `err` the stream's permanent failure: once a packet fails to
    /// decode or verify, nothing after it can be trusted.
    fn record(&mut self, err: Error) -> Error {
        self.failure = Some(err.clone());
        self.decoder.clear();
        zero_vec(&mut self.plaintext);
        self.plaintext_read = 0;
        err
    }
}

impl<C: SecurityContext> Drop for Session<C> {
    /// Zeroes decrypted bytes not yet read; the send buffer holds only
    /// wrapped packets.
    fn drop(&mut self) {
        zero_vec(&mut self.plaintext);
    }
}

fn would_block() -> Error {
    Error::new(ErrorKind::WouldBlock, "the transport would block; call again when it is ready")
}
