//! Packet framing of PostgreSQL's GSSAPI encryption: each token travels as a
//! 4-byte big-endian length followed by that many bytes.

use crate::error::{Error, ErrorKind};
use std::ops::Range;

/// Size of the big-endian length word in front of every token.
pub const LENGTH_WORD_SIZE: usize = 4;

/// Maximum size of a packet after the handshake, length word included. This
/// is a wire-protocol constant: PostgreSQL servers and libpq size their
/// buffers for it and reject anything larger.
pub const MAX_PACKET_SIZE: usize = 16384;

/// Maximum size of a handshake packet, length word included. This is a
/// wire-protocol constant too; it is larger than `MAX_PACKET_SIZE` because
/// Kerberos tickets that carry an Active Directory PAC exceed 16 KiB.
pub const MAX_HANDSHAKE_PACKET_SIZE: usize = 65536;

/// The GSSENCRequest message: length 8, then the request code 80877104
/// (1234 in the high 16 bits, 5680 in the low 16 bits).
pub const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];

/// Appends `token` to `out` as one packet: its length word, then the token.
pub fn encode_packet(token: &[u8], out: &mut Vec<u8>) {
    let length = u32::try_from(token.len()).expect("callers bound tokens by the packet limits");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(token);
}

/// A receive buffer that splits a byte stream into packets.
///
/// Bytes are appended with [`FrameDecoder::push`] or written straight into
/// [`FrameDecoder::spare`]; [`FrameDecoder::next_packet`] returns the range of
/// the next complete token. The length word is checked against the limit as
/// soon as its 4 bytes are present, before any buffer grows for the token.
///
/// The buffer keeps its size between reads: `start..end` holds received
/// bytes not yet returned, and the space after `end` is reused, so a stream
/// of packets costs no allocation per packet.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    max_packet_size: usize,
    phase: &'static str,
}

impl FrameDecoder {
    /// Creates a decoder for packets of at most `max_packet_size` bytes,
    /// length word included. `phase` names the phase in error messages.
    pub fn new(max_packet_size: usize, phase: &'static str) -> Self {
        FrameDecoder { buffer: Vec::new(), start: 0, end: 0, max_packet_size, phase }
    }

    /// Number of received bytes not yet returned as packets.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    pub fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// Changes the packet limit, keeping buffered bytes. Used when the
    /// handshake ends and the smaller limit of the packet layer applies.
    ///
    /// Also zeroes every byte but the unread ones, because during the
    /// handshake they contained tokens. From here on the buffer contains only
    /// wrapped packets, so it is released between reads without zeroing.
    pub fn set_max_packet_size(&mut self, max_packet_size: usize, phase: &'static str) {
        self.max_packet_size = max_packet_size;
        self.phase = phase;
        self.compact();
        let end = self.end;
        zero(&mut self.buffer[end..]);
    }

    pub fn push(&mut self, data: &[u8]) {
        let space = self.spare(data.len());
        space[..data.len()].copy_from_slice(data);
        self.commit(data.len());
    }

    /// Returns writable space of at least `min` bytes after the buffered
    /// bytes; call [`FrameDecoder::commit`] with the number of bytes written.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        self.compact();
        if self.buffer.len() < self.end + min {
            let grow = self.end + min - self.buffer.len();
            reserve_zeroing(&mut self.buffer, grow);
            self.buffer.resize(self.end + min, 0);
        }
        &mut self.buffer[self.end..]
    }

    /// Keeps `written` bytes of the space returned by the last `spare` call.
    pub fn commit(&mut self, written: usize) {
        assert!(self.end + written <= self.buffer.len(), "commit beyond the space returned by spare");
        self.end += written;
    }

    /// Number of bytes still missing for the next packet: the rest of the
    /// length word, or the rest of the token once the length is known.
    pub fn missing(&self) -> Result<usize, Error> {
        let available = self.buffered();
        if available < LENGTH_WORD_SIZE {
            return Ok(LENGTH_WORD_SIZE - available);
        }
        let token_length = self.token_length()?;
        Ok((LENGTH_WORD_SIZE + token_length).saturating_sub(available))
    }

    /// Returns the range of the next complete token in the buffer, or `None`
    /// when more bytes are needed. The range stays valid until the next call
    /// that changes the buffer.
    pub fn next_packet(&mut self) -> Result<Option<Range<usize>>, Error> {
        if self.buffered() < LENGTH_WORD_SIZE {
            return Ok(None);
        }
        let token_length = self.token_length()?;
        if self.buffered() < LENGTH_WORD_SIZE + token_length {
            return Ok(None);
        }
        let token_start = self.start + LENGTH_WORD_SIZE;
        self.start = token_start + token_length;
        Ok(Some(token_start..self.start))
    }

    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buffer[range]
    }

    pub fn bytes_mut(&mut self, range: Range<usize>) -> &mut [u8] {
        &mut self.buffer[range]
    }

    /// Returns the whole buffer and the range of unread bytes in it, so that
    /// the frame_decoder fuzz target can check which bytes are zeroed.
    #[cfg(fuzzing)]
    pub fn raw_parts(&self) -> (&[u8], Range<usize>) {
        (&self.buffer, self.start..self.end)
    }

    /// Zeroes and drops the buffer.
    pub fn clear(&mut self) {
        zero(&mut self.buffer);
        self.buffer = Vec::new();
        self.start = 0;
        self.end = 0;
    }

    fn token_length(&self) -> Result<usize, Error> {
        let word = &self.buffer[self.start..self.start + LENGTH_WORD_SIZE];
        let length = u32::from_be_bytes([word[0], word[1], word[2], word[3]]) as usize;
        if length == 0 {
            return Err(Error::new(
                ErrorKind::EmptyPacket,
                format!("received a GSSAPI {} packet of length 0; the connection is closed", self.phase),
            ));
        }
        if length > self.max_packet_size.saturating_sub(LENGTH_WORD_SIZE) {
            return Err(Error::packet_too_large(
                (length + LENGTH_WORD_SIZE) as u64,
                self.max_packet_size,
                self.phase,
            ));
        }
        Ok(length)
    }

    /// Moves unread bytes to the front of the buffer. The bytes left behind
    /// are ciphertext: plaintext decrypted in place is zeroed by the session
    /// as soon as it is delivered.
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        let remaining = self.end - self.start;
        self.buffer.copy_within(self.start..self.end, 0);
        self.start = 0;
        self.end = remaining;
    }

    /// Frees the buffer when it holds no unread byte, so that an idle
    /// connection keeps no receive buffer. The buffer is not zeroed: after
    /// `set_max_packet_size` it holds only wrapped packets, and plaintext
    /// unwrapped in place is zeroed by the session as soon as it is copied
    /// out.
    pub fn release_if_empty(&mut self) {
        if self.start == self.end && !self.buffer.is_empty() {
            self.buffer = Vec::new();
            self.start = 0;
            self.end = 0;
        }
    }
}

impl Drop for FrameDecoder {
    fn drop(&mut self) {
        zero(&mut self.buffer);
    }
}

/// Overwrites `bytes` with zeros in a way the optimizer keeps, so that
/// plaintext does not linger in freed memory. explicit_bzero (glibc 2.25
/// and later) runs at memset speed and is never elided as a dead store.
pub fn zero(bytes: &mut [u8]) {
    if bytes.is_empty() {
        return;
    }
    // SAFETY: `bytes` is valid for writes of `bytes.len()` bytes.
    unsafe { libc::explicit_bzero(bytes.as_mut_ptr().cast(), bytes.len()) };
}

/// A byte vector for tokens and plaintext. Its whole allocation is zeroed
/// when it is cleared or dropped, and when it grows, the old allocation is
/// zeroed before it is freed. It dereferences to a slice only, so that no
/// caller can grow it through `Vec` methods that would free an old block
/// unzeroed.
#[derive(Default)]
pub struct ZeroOnDrop(Vec<u8>);

impl ZeroOnDrop {
    pub fn new() -> Self {
        ZeroOnDrop(Vec::new())
    }

    /// Creates a vector of `length` zero bytes, to receive into.
    pub fn zeroed(length: usize) -> Self {
        ZeroOnDrop(vec![0; length])
    }

    pub fn from_slice(data: &[u8]) -> Self {
        ZeroOnDrop(data.to_vec())
    }

    pub fn extend_from_slice(&mut self, data: &[u8]) {
        reserve_zeroing(&mut self.0, data.len());
        self.0.extend_from_slice(data);
    }

    /// Appends `token` as one packet, as [`encode_packet`] does.
    pub fn push_packet(&mut self, token: &[u8]) {
        reserve_zeroing(&mut self.0, LENGTH_WORD_SIZE + token.len());
        encode_packet(token, &mut self.0);
    }

    /// Zeroes the contents and empties the vector, keeping its allocation.
    pub fn clear(&mut self) {
        zero_vec(&mut self.0);
    }
}

impl std::ops::Deref for ZeroOnDrop {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for ZeroOnDrop {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Clone for ZeroOnDrop {
    fn clone(&self) -> Self {
        ZeroOnDrop::from_slice(&self.0)
    }
}

impl PartialEq for ZeroOnDrop {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for ZeroOnDrop {}

/// Shows the length only, so that debug output never prints the contents.
impl std::fmt::Debug for ZeroOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ZeroOnDrop({} bytes)", self.0.len())
    }
}

impl Drop for ZeroOnDrop {
    fn drop(&mut self) {
        zero_vec(&mut self.0);
    }
}

/// Makes room for `additional` more bytes in `bytes`, as `Vec::reserve`
/// does. When that takes a new allocation, the contents move to it and the
/// old allocation is zeroed before it is freed, which `Vec`'s own growth
/// does not do. The capacity at least doubles, so that growing byte by byte
/// stays linear.
pub fn reserve_zeroing(bytes: &mut Vec<u8>, additional: usize) {
    let needed = bytes.len().checked_add(additional).expect("buffer size overflows usize");
    if needed <= bytes.capacity() {
        return;
    }
    let mut grown = Vec::with_capacity(needed.max(bytes.capacity().saturating_mul(2)));
    grown.extend_from_slice(bytes);
    zero_vec(bytes);
    *bytes = grown;
}

/// Zeroes a vector's whole allocation, then empties it.
pub fn zero_vec(bytes: &mut Vec<u8>) {
    let capacity = bytes.capacity();
    bytes.resize(capacity, 0);
    zero(bytes);
    bytes.clear();
}
