//! Errors of pggssenc. Each error has a kind, which the C ABI maps to a
//! stable number, and a message in libpq's terms that says what failed, with
//! the value, and what to do next.

use std::io;

/// The category of an error. The C ABI exposes each kind as a `pggss_result`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A required pointer argument of a C function was NULL.
    NullParameter,
    /// A parameter has an invalid value or a conninfo string is malformed.
    InvalidParameter,
    /// The call does not fit the connection's state.
    InvalidState,
    /// The transport failed with an operating-system error.
    Io,
    /// The server answered 'N' to GSSENCRequest and gssencmode is `require`.
    ServerDeclined,
    /// The server answered 'E' to GSSENCRequest; the socket is unusable.
    ServerErrorResponse,
    /// No usable Kerberos credentials were found.
    NoCredentials,
    /// The server sent something other than 'G', 'N' or 'E'.
    UnexpectedResponse,
    /// A client's first packet is malformed or of an unknown kind.
    InvalidStartupPacket,
    /// The peer closed the connection in the middle of a message or handshake.
    UnexpectedEof,
    /// Unencrypted bytes arrived where only encrypted ones may.
    PlaintextInjection,
    /// A packet length is larger than the protocol allows.
    PacketTooLarge,
    /// A packet length is zero.
    EmptyPacket,
    /// A GSSAPI call failed.
    Gss,
    /// The security context lacks mutual authentication or confidentiality.
    ServicesNotGranted,
    /// A packet was not protected with confidentiality.
    NoConfidentiality,
    /// A write was retried with fewer bytes than were already encrypted.
    RetryTooShort,
    /// The target name cannot be built because `host` is not set.
    HostMissing,
    /// The security context did not complete within the round limit.
    TooManyRounds,
    /// A caller's buffer is too small for the value.
    BufferTooSmall,
    /// The transport would block; the call should be repeated when it is ready.
    WouldBlock,
}

/// An error with its kind, message and, for transport errors, the errno.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    os_error: Option<i32>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), os_error: None }
    }

    /// Wraps an I/O error; `during` names the step, such as "sending GSSENCRequest".
    pub fn io(during: &str, err: &io::Error) -> Self {
        Error {
            kind: ErrorKind::Io,
            message: format!("could not transfer data while {during}: {err}"),
            os_error: err.raw_os_error(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The errno of a transport error, if the error came from the operating system.
    pub fn os_error(&self) -> Option<i32> {
        self.os_error
    }

    pub(crate) fn invalid_state(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidState, message)
    }

    /// `peer` is "server" or "client", the side that closed the connection.
    pub(crate) fn unexpected_eof(peer: &str, during: &str) -> Self {
        Error::new(ErrorKind::UnexpectedEof, format!("{peer} closed the connection unexpectedly while {during}"))
    }

    pub(crate) fn packet_too_large(length: u64, max: usize, phase: &str) -> Self {
        Error::new(
            ErrorKind::PacketTooLarge,
            format!(
                "received a GSSAPI {phase} packet of {length} bytes including the length word, \
                 over the maximum of {max}; the connection is closed without reading it"
            ),
        )
    }
}
