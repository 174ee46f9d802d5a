//! I/O adapters: they move bytes between the core and a transport with
//! `recv(2)`/`send(2)` semantics. The transport belongs to the caller; the
//! adapters never close or reconfigure it.

mod buffer;
mod callback;
mod fd;

pub use buffer::{BufferTransport, MAX_QUEUED_OUTPUT};
pub use callback::CallbackTransport;
pub use fd::FdTransport;

use std::io;

/// A byte stream the caller owns.
///
/// `recv` returns the number of bytes received, 0 at orderly end of stream,
/// or an error; `send` returns the number of bytes accepted. Either returns
/// an error of kind `WouldBlock` when a non-blocking transport is not ready.
pub trait Transport: Send {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    fn send(&mut self, buf: &[u8]) -> io::Result<usize>;

    /// The in-memory queues, when this transport is a [`BufferTransport`].
    fn as_buffers(&mut self) -> Option<&mut BufferTransport> {
        None
    }
}
