//! A transport made of two in-memory queues, for callers that move bytes
//! themselves (asyncio, tokio, libuv, Go's netpoller): they feed what the
//! network delivered and take what is to be sent. The connection reads from
//! and writes to the queues through the same code paths as for a socket.

use super::Transport;
use crate::core::frame::zero;
use std::collections::VecDeque;
use std::io;

/// Queued outgoing bytes beyond which writes report would-block, so that a
/// caller that does not drain the output gets backpressure.
pub const MAX_QUEUED_OUTPUT: usize = 256 * 1024;

#[derive(Default)]
pub struct BufferTransport {
    inbound: VecDeque<u8>,
    inbound_eof: bool,
    outbound: VecDeque<u8>,
}

impl BufferTransport {
    pub fn new() -> Self {
        BufferTransport::default()
    }

    /// Adds bytes received from the network.
    pub fn feed(&mut self, data: &[u8]) {
        self.inbound.extend(data);
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

    /// Moves up to `out.len()` bytes waiting to be sent into `out`.
    pub fn take_output(&mut self, out: &mut [u8]) -> usize {
        let count = out.len().min(self.outbound.len());
        for (slot, byte) in out.iter_mut().zip(self.outbound.drain(..count)) {
            *slot = byte;
        }
        count
    }
}

impl Transport for BufferTransport {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inbound.is_empty() {
            return if self.inbound_eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let count = buf.len().min(self.inbound.len());
        for (slot, byte) in buf.iter_mut().zip(self.inbound.drain(..count)) {
            *slot = byte;
        }
        Ok(count)
    }

    fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = MAX_QUEUED_OUTPUT.saturating_sub(self.outbound.len());
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let count = room.min(buf.len());
        self.outbound.extend(&buf[..count]);
        Ok(count)
    }

    fn as_buffers(&mut self) -> Option<&mut BufferTransport> {
        Some(self)
    }
}

impl Drop for BufferTransport {
    fn drop(&mut self) {
        let (first, second) = self.inbound.as_mut_slices();
        zero(first);
        zero(second);
    }
}
