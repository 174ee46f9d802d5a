//! Result codes of the C ABI and their text.

use crate::error::ErrorKind;
use std::ffi::c_char;

/// Result of a pggssenc call. Codes below 100 concern the call itself; codes
/// from 100 up report what happened on the connection. Numbers are stable:
/// a retired code stays reserved.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum pggss_result {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullParameter = 1,
    /// A parameter name or value is invalid, or a conninfo string is malformed.
    InvalidParameter = 2,
    /// The library hit an internal error (a Rust panic, caught at the boundary).
    Panic = 3,
    /// The call does not fit the connection's state.
    InvalidState = 4,
    /// A caller's buffer is too small; the required size was reported.
    BufferTooSmall = 5,
    /// The transport would block; repeat the call when it is ready.
    WouldBlock = 6,
    /// The transport failed; errno has the operating-system error.
    Io = 100,
    /// The server declined GSSENCRequest ('N') and gssencmode is "require".
    ServerDeclined = 101,
    /// The server answered GSSENCRequest with an error ('E'); the socket is
    /// unusable. Under "prefer", reconnect without GSS encryption.
    ServerErrorResponse = 102,
    /// No usable Kerberos credentials.
    NoCredentials = 103,
    /// The server's response to GSSENCRequest was not 'G', 'N' or 'E'.
    UnexpectedResponse = 104,
    /// The peer closed the connection in the middle of a packet or handshake.
    UnexpectedEof = 105,
    /// Unencrypted bytes arrived where only encrypted ones may; they were discarded.
    PlaintextInjection = 106,
    /// A packet length exceeds the protocol limit.
    PacketTooLarge = 107,
    /// A packet has length 0.
    EmptyPacket = 108,
    /// A GSSAPI call failed; the message has the major and minor status text.
    GssFailure = 109,
    /// The security context lacks mutual authentication, confidentiality or integrity.
    ServicesNotGranted = 110,
    /// A packet was not protected with confidentiality; it was discarded.
    NoConfidentiality = 111,
    /// A write was retried with fewer bytes than were already encrypted.
    RetryTooShort = 112,
    /// host is not set, so no target name can be built.
    HostMissing = 113,
    /// The handshake did not complete within the round limit.
    TooManyRounds = 114,
    /// Acceptor: the client's first packet is malformed or of an unknown kind.
    InvalidStartupPacket = 115,
}

impl From<ErrorKind> for pggss_result {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::NullParameter => pggss_result::NullParameter,
            ErrorKind::InvalidParameter => pggss_result::InvalidParameter,
            ErrorKind::InvalidState => pggss_result::InvalidState,
            ErrorKind::BufferTooSmall => pggss_result::BufferTooSmall,
            ErrorKind::WouldBlock => pggss_result::WouldBlock,
            ErrorKind::Io => pggss_result::Io,
            ErrorKind::ServerDeclined => pggss_result::ServerDeclined,
            ErrorKind::ServerErrorResponse => pggss_result::ServerErrorResponse,
            ErrorKind::NoCredentials => pggss_result::NoCredentials,
            ErrorKind::UnexpectedResponse => pggss_result::UnexpectedResponse,
            ErrorKind::UnexpectedEof => pggss_result::UnexpectedEof,
            ErrorKind::PlaintextInjection => pggss_result::PlaintextInjection,
            ErrorKind::PacketTooLarge => pggss_result::PacketTooLarge,
            ErrorKind::EmptyPacket => pggss_result::EmptyPacket,
            ErrorKind::Gss => pggss_result::GssFailure,
            ErrorKind::ServicesNotGranted => pggss_result::ServicesNotGranted,
            ErrorKind::NoConfidentiality => pggss_result::NoConfidentiality,
            ErrorKind::RetryTooShort => pggss_result::RetryTooShort,
            ErrorKind::HostMissing => pggss_result::HostMissing,
            ErrorKind::TooManyRounds => pggss_result::TooManyRounds,
            ErrorKind::InvalidStartupPacket => pggss_result::InvalidStartupPacket,
        }
    }
}

impl pggss_result {
    fn text(self) -> &'static str {
        match self {
            pggss_result::Ok => "success",
            pggss_result::NullParameter => "a required pointer argument was NULL",
            pggss_result::InvalidParameter => "invalid parameter",
            pggss_result::Panic => "internal error in pggssenc",
            pggss_result::InvalidState => "call not valid in the connection's state",
            pggss_result::BufferTooSmall => "buffer too small",
            pggss_result::WouldBlock => "the transport would block",
            pggss_result::Io => "transport error",
            pggss_result::ServerDeclined => "server declined GSSAPI encryption",
            pggss_result::ServerErrorResponse => "server answered GSSENCRequest with an error",
            pggss_result::NoCredentials => "no usable Kerberos credentials",
            pggss_result::UnexpectedResponse => "invalid response to GSSENCRequest",
            pggss_result::UnexpectedEof => "peer closed the connection unexpectedly",
            pggss_result::PlaintextInjection => "unencrypted data where only encrypted data is allowed",
            pggss_result::PacketTooLarge => "GSSAPI packet too large",
            pggss_result::EmptyPacket => "GSSAPI packet of length 0",
            pggss_result::GssFailure => "GSSAPI call failed",
            pggss_result::ServicesNotGranted => "GSSAPI security context lacks required services",
            pggss_result::NoConfidentiality => "GSSAPI packet without confidentiality",
            pggss_result::RetryTooShort => "write retried with less data than was already encrypted",
            pggss_result::HostMissing => "host is not set",
            pggss_result::TooManyRounds => "GSSAPI handshake did not complete within the round limit",
            pggss_result::InvalidStartupPacket => "invalid startup packet",
        }
    }

    fn from_number(number: u32) -> Option<pggss_result> {
        use pggss_result::*;
        const ALL: [pggss_result; 23] = [
            Ok, NullParameter, InvalidParameter, Panic, InvalidState, BufferTooSmall, WouldBlock, Io,
            ServerDeclined, ServerErrorResponse, NoCredentials, UnexpectedResponse, UnexpectedEof,
            PlaintextInjection, PacketTooLarge, EmptyPacket, GssFailure, ServicesNotGranted,
            NoConfidentiality, RetryTooShort, HostMissing, TooManyRounds, InvalidStartupPacket,
        ];
        ALL.into_iter().find(|code| *code as u32 == number)
    }
}

/// Writes a short description of `result` into `buf` as a NUL-terminated
/// string, truncated to fit `len` bytes, like snprintf.
///
/// `result` is taken as a plain number so that any value, even one this
/// version does not know, is safe to pass. `buf` may be NULL when `len` is
/// 0. Returns the length of the full description without the NUL, so a
/// return value of `len` or more means the text was truncated. The buffer is
/// the caller's and is not kept. Thread-safe.
#[no_mangle]
pub extern "C" fn pggss_result_text(result: u32, buf: *mut c_char, len: usize) -> usize {
    panic_boundary!(0, {
        let text = match pggss_result::from_number(result) {
            Some(code) => code.text().to_string(),
            None => format!("unknown pggss_result {result}"),
        };
        write_c_string(&text, buf, len);
        text.len()
    })
}

/// Copies `text` into a caller's buffer of `len` bytes as a NUL-terminated
/// string, truncating it when needed. Does nothing for a NULL buffer or a
/// length of 0.
pub(crate) fn write_c_string(text: &str, buf: *mut c_char, len: usize) {
    if buf.is_null() || len == 0 {
        return;
    }
    let count = text.len().min(len - 1);
    // SAFETY: the caller promises `buf` is valid for `len` bytes, and
    // `count + 1 <= len`.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), count);
        *buf.add(count) = 0;
    }
}
