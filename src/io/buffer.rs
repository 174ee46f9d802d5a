//! A transport made of two in-memory queues, for callers that move bytes
//! themselves (asyncio, tokio, libuv, Go's netpoller): they feed what the
//! network delivered and take what is to be sent. The connection reads from
//! and writes to the queues through the same code paths as for a socket.

use super::Transport;
use crate::core::frame::{reserve_zeroing, zero, zero_vec};
use std::io;

/// Queued outgoing bytes beyond which writes report would-block, so that a
/// caller that does not drain the output gets backpressure.
pub const MAX_QUEUED_OUTPUT: usize = 256 * 1024;

/// A byte queue: bytes are appended at the end and taken from `start` on.
/// During negotiation it carries handshake tokens, and for an acceptor the
/// client's plaintext startup packet, so until `end_zeroing` every
/// allocation it frees is zeroed first, when it grows, empties or is
/// dropped. After encryption starts it carries only wrapped packets, which
/// cross the network as they are.
struct Queue {
    bytes: Vec<u8>,
    start: usize,
    zeroing: bool,
}

impl Default for Queue {
    fn default() -> Self {
        Queue { bytes: Vec::new(), start: 0, zeroing: true }
    }
}

impl Queue {
    fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    fn push(&mut self, data: &[u8]) {
        // Drop taken bytes before growing, so the queue stays near the size
        // of what it contains.
        if self.start > 0 && self.start >= self.bytes.len() / 2 {
            let remaining = self.len();
            self.bytes.copy_within(self.start.., 0);
            if self.zeroing {
                zero(&mut self.bytes[remaining..]);
            }
            self.bytes.truncate(remaining);
            self.start = 0;
        }
        if self.zeroing {
            reserve_zeroing(&mut self.bytes, data.len());
        }
        self.bytes.extend_from_slice(data);
    }

    fn take(&mut self, out: &mut [u8]) -> usize {
        let count = out.len().min(self.len());
        let taken = &mut self.bytes[self.start..self.start + count];
        out[..count].copy_from_slice(taken);
        self.start += count;
        if self.start == self.bytes.len() {
            if self.zeroing {
                zero(&mut self.bytes);
            }
            self.bytes = Vec::new();
            self.start = 0;
        }
        count
    }

    /// Zeroes the bytes already taken and stops zeroing from here on.
    fn end_zeroing(&mut self) {
        let start = self.start;
        zero(&mut self.bytes[..start]);
        self.zeroing = false;
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        zero_vec(&mut self.bytes);
    }
}

#[derive(Default)]
pub struct BufferTransport {
    inbound: Queue,
    inbound_eof: bool,
    outbound: Queue,
}

impl BufferTransport {
    pub fn new() -> Self {
        BufferTransport::default()
    }

    /// Adds bytes received from the network.
    pub fn feed(&mut self, data: &[u8]) {
        self.inbound.push(data);
    }

    /// Records that the network stream ended; reads return 0 once the fed
    /// bytes are consumed.
    pub fn feed_eof(&mut self) {
        self.inbound_eof = true;
    }

    /// Number of fed bytes the connection has not consumed yet.
    pub fn inbound_len(&self) -> usize {
        self.inbound.len()
    }

    /// Number of bytes waiting to be sent.
    pub fn outbound_len(&self) -> usize {
        self.outbound.len()
    }

    /// Records that encryption started, so that the queues carry only
    /// wrapped packets from here on and no longer need zeroing. Bytes
    /// already taken are zeroed now, because they contained tokens.
    pub(crate) fn end_negotiation(&mut self) {
        self.inbound.end_zeroing();
        self.outbound.end_zeroing();
    }

    /// Moves up to `out.len()` bytes waiting to be sent into `out`.
    pub fn take_output(&mut self, out: &mut [u8]) -> usize {
        self.outbound.take(out)
    }
}

impl Transport for BufferTransport {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inbound.len() == 0 {
            return if self.inbound_eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        Ok(self.inbound.take(buf))
    }

    fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = MAX_QUEUED_OUTPUT.saturating_sub(self.outbound.len());
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let count = room.min(buf.len());
        self.outbound.push(&buf[..count]);
        Ok(count)
    }

    fn as_buffers(&mut self) -> Option<&mut BufferTransport> {
        Some(self)
    }
}
