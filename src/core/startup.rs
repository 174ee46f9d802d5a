//! The first packet a PostgreSQL client sends: GSSENCRequest, SSLRequest,
//! CancelRequest or a StartupMessage. The acceptor reads it to decide what
//! to do; everything but GSSENCRequest is handed back to the caller intact.

use crate::error::{Error, ErrorKind};

/// Largest startup packet a server accepts, length word included, as in
/// PostgreSQL (MAX_STARTUP_PACKET_LENGTH).
pub const MAX_STARTUP_PACKET_SIZE: usize = 10000;

/// Request codes that stand where a StartupMessage has its protocol version.
pub const CANCEL_REQUEST_CODE: u32 = (1234 << 16) | 5678;
pub const SSL_REQUEST_CODE: u32 = (1234 << 16) | 5679;
pub const GSSENC_REQUEST_CODE: u32 = (1234 << 16) | 5680;

/// What the first packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartupKind {
    GssEncRequest,
    SslRequest,
    CancelRequest,
    /// A StartupMessage of protocol version 3.x.
    StartupMessage,
}

impl StartupKind {
    pub fn name(self) -> &'static str {
        match self {
            StartupKind::GssEncRequest => "GSSENCRequest",
            StartupKind::SslRequest => "SSLRequest",
            StartupKind::CancelRequest => "CancelRequest",
            StartupKind::StartupMessage => "StartupMessage",
        }
    }
}

/// Classifies the startup packet at the start of `bytes`. Returns `None`
/// while the packet is incomplete, and the kind with the packet's length
/// once it is complete. Lengths and codes are checked as soon as their
/// bytes are present.
pub fn parse_startup(bytes: &[u8]) -> Result<Option<(StartupKind, usize)>, Error> {
    if bytes.len() < 4 {
        return Ok(None);
    }
    let length = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if !(8..=MAX_STARTUP_PACKET_SIZE).contains(&length) {
        return Err(Error::new(
            ErrorKind::InvalidStartupPacket,
            format!("invalid startup packet length {length}; expected 8 to {MAX_STARTUP_PACKET_SIZE} bytes"),
        ));
    }
    if bytes.len() < 8 {
        return Ok(None);
    }

    let code = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let (kind, expected_length) = match code {
        GSSENC_REQUEST_CODE => (StartupKind::GssEncRequest, Some(8)),
        SSL_REQUEST_CODE => (StartupKind::SslRequest, Some(8)),
        CANCEL_REQUEST_CODE => (StartupKind::CancelRequest, Some(16)),
        _ if code >> 16 == 3 => (StartupKind::StartupMessage, None),
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidStartupPacket,
                format!(
                    "unsupported startup packet code {code} (protocol {}.{}); expected protocol 3.x, \
                     GSSENCRequest, SSLRequest or CancelRequest",
                    code >> 16,
                    code & 0xffff
                ),
            ))
        }
    };
    if let Some(expected) = expected_length {
        if length != expected {
            return Err(Error::new(
                ErrorKind::InvalidStartupPacket,
                format!("invalid {} length {length}; expected {expected}", kind.name()),
            ));
        }
    }

    if bytes.len() < length {
        return Ok(None);
    }
    Ok(Some((kind, length)))
}

/// Number of bytes still missing for the startup packet at the start of
/// `bytes`, counting only what is known: the length word first, then the
/// rest of the packet.
pub fn startup_missing(bytes: &[u8]) -> usize {
    if bytes.len() < 4 {
        return 8 - bytes.len();
    }
    let length = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    length.clamp(8, MAX_STARTUP_PACKET_SIZE).saturating_sub(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: u32, body: &[u8]) -> Vec<u8> {
        let mut bytes = ((8 + body.len()) as u32).to_be_bytes().to_vec();
        bytes.extend(code.to_be_bytes());
        bytes.extend(body);
        bytes
    }

    #[test]
    fn classifies_each_kind() {
        assert_eq!(parse_startup(&packet(80877104, b"")).unwrap(), Some((StartupKind::GssEncRequest, 8)));
        assert_eq!(parse_startup(&packet(80877103, b"")).unwrap(), Some((StartupKind::SslRequest, 8)));
        assert_eq!(parse_startup(&packet(80877102, &[0; 8])).unwrap(), Some((StartupKind::CancelRequest, 16)));
        let startup = packet(196608, b"user\0tester\0\0");
        assert_eq!(parse_startup(&startup).unwrap(), Some((StartupKind::StartupMessage, startup.len())));
    }

    #[test]
    fn incomplete_packets_wait() {
        let startup = packet(196608, b"user\0tester\0\0");
        for end in 0..startup.len() {
            assert_eq!(parse_startup(&startup[..end]).unwrap(), None, "prefix {end}");
        }
        assert_eq!(startup_missing(&startup[..2]), 6);
        assert_eq!(startup_missing(&startup[..10]), startup.len() - 10);
    }

    #[test]
    fn rejects_bad_lengths_and_codes() {
        let cases: [(Vec<u8>, &str); 5] = [
            (vec![0, 0, 0, 7], "invalid startup packet length 7; expected 8 to 10000 bytes"),
            (vec![0, 0, 0x27, 0x11], "invalid startup packet length 10001; expected 8 to 10000 bytes"),
            (vec![0x7f, 0xff, 0xff, 0xff], "invalid startup packet length 2147483647; expected 8 to 10000 bytes"),
            (packet(80877104, b"x"), "invalid GSSENCRequest length 9; expected 8"),
            (
                packet(131072, b""),
                "unsupported startup packet code 131072 (protocol 2.0); expected protocol 3.x, GSSENCRequest, \
                 SSLRequest or CancelRequest",
            ),
        ];
        for (bytes, message) in cases {
            let err = parse_startup(&bytes).unwrap_err();
            assert_eq!(err.message(), message);
        }
    }
}
