//! A transport over functions the caller supplies, for byte streams that
//! are not a plain file descriptor: a Go net.Conn, a Python socket object, a
//! TLS-wrapped or in-memory stream.

use super::Transport;
use std::io;

type RecvFn = dyn FnMut(&mut [u8]) -> io::Result<usize> + Send;
type SendFn = dyn FnMut(&[u8]) -> io::Result<usize> + Send;

pub struct CallbackTransport {
    recv: Box<RecvFn>,
    send: Box<SendFn>,
}

impl CallbackTransport {
    pub fn new(
        recv: impl FnMut(&mut [u8]) -> io::Result<usize> + Send + 'static,
        send: impl FnMut(&[u8]) -> io::Result<usize> + Send + 'static,
    ) -> Self {
        CallbackTransport { recv: Box::new(recv), send: Box::new(send) }
    }
}

impl Transport for CallbackTransport {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let received = (self.recv)(buf)?;
        if received > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("read callback reported {received} bytes for a buffer of {}", buf.len()),
            ));
        }
        Ok(received)
    }

    fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        let sent = (self.send)(buf)?;
        if sent > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("write callback reported {sent} bytes for a buffer of {}", buf.len()),
            ));
        }
        Ok(sent)
    }
}
