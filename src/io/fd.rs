//! A transport over a file descriptor the caller owns, normally a connected
//! TCP or Unix-domain socket in blocking or non-blocking mode.

use super::Transport;
use std::io;
use std::os::fd::RawFd;

pub struct FdTransport {
    fd: RawFd,
    /// False once the descriptor turned out not to be a socket (a pipe, for
    /// example); then plain read(2) and write(2) are used.
    is_socket: bool,
}

impl FdTransport {
    /// Wraps `fd` without taking ownership: dropping the transport leaves
    /// the descriptor open.
    pub fn new(fd: RawFd) -> Self {
        FdTransport { fd, is_socket: true }
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }
}

impl Transport for FdTransport {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
            let received = unsafe {
                if self.is_socket {
                    libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0)
                } else {
                    libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len())
                }
            };
            if received >= 0 {
                return Ok(received as usize);
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOTSOCK) if self.is_socket => self.is_socket = false,
                _ => return Err(err),
            }
        }
    }

    fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // MSG_NOSIGNAL turns a send on a closed connection into EPIPE
            // instead of a SIGPIPE that would kill the caller's process.
            // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
            let sent = unsafe {
                if self.is_socket {
                    libc::send(self.fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL)
                } else {
                    libc::write(self.fd, buf.as_ptr().cast(), buf.len())
                }
            };
            if sent >= 0 {
                return Ok(sent as usize);
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOTSOCK) if self.is_socket => self.is_socket = false,
                _ => return Err(err),
            }
        }
    }
}
