//! Checks that no heap block freed by the library still contains a
//! handshake token or plaintext.
//!
//! A global allocator looks into every block as it is freed, while scanning
//! is on, for marker byte strings that only the tokens and plaintext of
//! these tests contain. `realloc` is not overridden, so a growing vector
//! goes through `alloc`, copy and `dealloc`, and the old block is looked
//! into too. Wrapped packets are the plaintext XORed with 0xa5, which sets
//! the top bit of every byte of the ASCII marker. So ciphertext left in freed
//! memory, which is not a secret, never counts.
//!
//! The security contexts here are stand-ins whose tokens carry the marker.
//! The GSSAPI library's own memory is outside Rust's allocator and outside
//! this check.

use pggssenc::conn::{AcceptorSettings, Connection, Outcome, Polling};
use pggssenc::core::frame::MAX_PACKET_SIZE;
use pggssenc::core::{Acceptance, Granted, Negotiation, NegotiationStatus, SecurityContext, Session, Step};
use pggssenc::io::BufferTransport;
use pggssenc::{Error, ErrorKind};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The marker in tokens, plaintext and StartupMessages.
const MARKER: &[u8] = b"<pggssenc zeroing marker 5f0e>";
/// The process ID and secret key of the CancelRequest under test. The key
/// alone is only 4 bytes, so the check looks for both together.
const CANCEL_PID_AND_KEY: [u8; 8] = [0x7e, 0x11, 0xc3, 0x5a, 0xd2, 0x9b, 0x04, 0xe8];

struct ScanningAllocator;

static SCANNING: AtomicBool = AtomicBool::new(false);
static FOUND: AtomicUsize = AtomicUsize::new(0);

fn block_contains(block: *const u8, size: usize, needle: &[u8]) -> bool {
    // memmem reads the block as bytes, which C allows for memory that was
    // never written, unlike a Rust slice over it.
    let hit = unsafe { libc::memmem(block.cast(), size, needle.as_ptr().cast(), needle.len()) };
    !hit.is_null()
}

unsafe impl GlobalAlloc for ScanningAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if SCANNING.load(Ordering::SeqCst)
            && (block_contains(block, layout.size(), MARKER) || block_contains(block, layout.size(), &CANCEL_PID_AND_KEY))
        {
            FOUND.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.dealloc(block, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: ScanningAllocator = ScanningAllocator;

/// One test scans at a time: the counter is global.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `body` with scanning on and returns the number of freed blocks that
/// contained a marker.
fn freed_with_marker(body: impl FnOnce()) -> usize {
    FOUND.store(0, Ordering::SeqCst);
    SCANNING.store(true, Ordering::SeqCst);
    body();
    SCANNING.store(false, Ordering::SeqCst);
    FOUND.load(Ordering::SeqCst)
}

/// Returns `length` bytes: a one-byte tag, then the marker repeated.
fn marked(tag: u8, length: usize) -> Vec<u8> {
    let mut bytes = vec![tag];
    bytes.extend(MARKER.iter().cycle().take(length - 1));
    bytes
}

/// Returns whether `bytes` is what `marked(tag, length)` returns.
fn is_marked(tag: u8, length: usize, bytes: &[u8]) -> bool {
    bytes.len() == length && bytes[0] == tag && bytes[1..].iter().zip(MARKER.iter().cycle()).all(|(a, b)| a == b)
}

const XOR_KEY: u8 = 0xa5;
const CLIENT_TOKEN: (u8, usize) = (b'c', 30_000);
/// The largest token a handshake packet can carry. The client's receive
/// buffer then ends the handshake at 65,536 bytes, as much as the packet
/// layer reads at once. So it does not grow, which would zero it, and the
/// old token bytes stay behind the new packets until it is released.
const SERVER_TOKEN: (u8, usize) = (b's', 65_532);

/// A stand-in mechanism: one token each way, then XOR "encryption" with a
/// trailing confidentiality flag.
struct MarkerContext {
    acceptor: bool,
    steps: usize,
}

impl SecurityContext for MarkerContext {
    fn step(&mut self, input: Option<&[u8]>) -> Result<Step, Error> {
        self.steps += 1;
        let granted = Granted { mutual_authentication: true, confidentiality: true, integrity: true, delegation: false };
        let defective = || Err(Error::new(ErrorKind::Gss, "stand-in mechanism: unexpected token"));
        match (self.acceptor, self.steps, input) {
            (false, 1, None) => Ok(Step { token: marked(CLIENT_TOKEN.0, CLIENT_TOKEN.1), complete: None }),
            (false, 2, Some(token)) if is_marked(SERVER_TOKEN.0, SERVER_TOKEN.1, token) => {
                Ok(Step { token: Vec::new(), complete: Some(granted) })
            }
            (true, 1, Some(token)) if is_marked(CLIENT_TOKEN.0, CLIENT_TOKEN.1, token) => {
                Ok(Step { token: marked(SERVER_TOKEN.0, SERVER_TOKEN.1), complete: Some(granted) })
            }
            _ => defective(),
        }
    }

    fn wrap(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        out.reserve(plaintext.len() + 1);
        out.extend(plaintext.iter().map(|byte| byte ^ XOR_KEY));
        out.push(1);
        Ok(())
    }

    fn unwrap(&mut self, token: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        match token.split_last() {
            Some((1, body)) => {
                out.reserve(body.len());
                out.extend(body.iter().map(|byte| byte ^ XOR_KEY));
                Ok(())
            }
            _ => Err(Error::new(ErrorKind::Gss, "stand-in mechanism: token does not verify")),
        }
    }

    fn max_plaintext(&mut self, max_token_size: usize) -> Result<usize, Error> {
        Ok(max_token_size - 1)
    }
}

/// Chunk sizes that make receive buffers grow many times: 1, 2, 3, 5, 8...
fn chunk_sizes() -> impl Iterator<Item = usize> {
    let mut pair = (1usize, 2usize);
    std::iter::from_fn(move || {
        let size = pair.0;
        pair = (pair.1, pair.0 + pair.1);
        Some(size)
    })
}

/// Runs both handshakes through the core, moving bytes in growing chunks.
fn handshake() -> (Session<MarkerContext>, Session<MarkerContext>) {
    let mut client = Negotiation::new(MarkerContext { acceptor: false, steps: 0 });
    assert_eq!(client.status(), NegotiationStatus::WantWrite);
    let request = client.output().len();
    client.consume_output(request);
    let mut server = Acceptance::new(MarkerContext { acceptor: true, steps: 0 }, true);
    assert_eq!(server.output(), b"G");
    server.consume_output(1);
    client.receive(b"G").expect("client reads G");

    // The client's token, in growing chunks.
    let mut sizes = chunk_sizes();
    while !client.output().is_empty() {
        let count = sizes.next().unwrap().min(client.output().len());
        server.receive(&client.output()[..count]).expect("server reads the client token");
        client.consume_output(count);
    }
    assert_eq!(server.status(), NegotiationStatus::WantWrite);

    // The server's token, in growing chunks.
    let mut sizes = chunk_sizes();
    while !server.output().is_empty() {
        let count = sizes.next().unwrap().min(server.output().len());
        client.receive(&server.output()[..count]).expect("client reads the server token");
        server.consume_output(count);
    }
    assert_eq!(client.status(), NegotiationStatus::Established);
    assert_eq!(server.status(), NegotiationStatus::Established);

    let (context, decoder, _) = client.into_established().expect("client established");
    let client = Session::new(context, decoder, "server").expect("client session");
    let (context, decoder, _) = server.into_established().expect("server established");
    let server = Session::new(context, decoder, "client").expect("server session");
    (client, server)
}

#[test]
fn allocator_finds_marker_in_freed_blocks() {
    let _serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let freed = freed_with_marker(|| {
        let mut bytes = Vec::with_capacity(MARKER.len());
        bytes.extend_from_slice(MARKER);
        // Growing moves the bytes to a new block and frees the old one.
        bytes.reserve(4096);
        drop(bytes);
    });
    assert_eq!(freed, 2);
}

#[test]
fn core_handshake_and_data_zeroed() {
    let _serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // The test's own buffers are allocated before scanning starts and freed
    // after it ends.
    let message = marked(b'p', 100_000);
    let mut wire = Vec::with_capacity(2 * message.len());
    let mut received = vec![0u8; message.len()];

    let freed = freed_with_marker(|| {
        let (mut client, mut server) = handshake();

        // Client to server, through feed and decrypt, read in small pieces
        // so that the rest of a packet waits in the session's buffer.
        assert_eq!(client.encrypt(&message).unwrap(), message.len());
        wire.clear();
        wire.extend_from_slice(client.send_buffer());
        let sent = wire.len();
        client.consume_send(sent);
        let mut offset = 0;
        for chunk in wire.chunks(7_001) {
            server.feed(chunk).unwrap();
            loop {
                let count = server.decrypt(&mut received[offset..(offset + 1_000).min(message.len())]).unwrap();
                if count == 0 {
                    break;
                }
                offset += count;
            }
        }
        assert_eq!(offset, message.len());
        assert!(received == message, "the server read other bytes than the client wrote");

        // Server to client, through read_with, which releases its receive
        // buffer whenever it empties.
        assert_eq!(server.encrypt(&message).unwrap(), message.len());
        wire.clear();
        wire.extend_from_slice(server.send_buffer());
        let sent = wire.len();
        server.consume_send(sent);
        received.fill(0);
        let mut offset = 0;
        let mut unread = &wire[..];
        let mut sizes = chunk_sizes().map(|size| size.min(MAX_PACKET_SIZE));
        while offset < message.len() {
            let want = sizes.next().unwrap();
            let end = (offset + want).min(message.len());
            let count = client
                .read_with(&mut received[offset..end], |buffer| {
                    let count = buffer.len().min(unread.len()).min(9_000);
                    buffer[..count].copy_from_slice(&unread[..count]);
                    unread = &unread[count..];
                    Ok(count)
                })
                .unwrap();
            assert!(count > 0, "read_with returned end of stream early");
            offset += count;
        }
        assert!(received == message, "the client read other bytes than the server wrote");

        // A tampered packet ends the server's stream while plaintext of an
        // earlier packet is still waiting to be read.
        client.encrypt(&message[..5_000]).unwrap();
        client.encrypt(&message[..5_000]).unwrap();
        wire.clear();
        wire.extend_from_slice(client.send_buffer());
        let last = wire.len() - 1;
        wire[last] = 0;
        server.feed(&wire).unwrap();
        assert_eq!(server.decrypt(&mut received[..10]).unwrap(), 10);
        let err = loop {
            match server.decrypt(&mut received[..4_000]) {
                Ok(0) => panic!("the tampered packet was not reported"),
                Ok(_) => continue,
                Err(err) => break err,
            }
        };
        assert_eq!(err.kind(), ErrorKind::Gss);
        drop(client);
        drop(server);
    });
    assert_eq!(freed, 0, "freed blocks still contained a token or plaintext");
    drop(message);
}

#[test]
fn acceptance_failed_midway_zeroed() {
    let _serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let freed = freed_with_marker(|| {
        let mut client = Negotiation::new(MarkerContext { acceptor: false, steps: 0 });
        let request = client.output().len();
        client.consume_output(request);
        let mut server = Acceptance::new(MarkerContext { acceptor: true, steps: 0 }, true);
        server.consume_output(1);
        client.receive(b"G").unwrap();
        // Half of the client's token arrives in growing chunks, then the
        // connection ends.
        let half = client.output().len() / 2;
        let mut sizes = chunk_sizes();
        let mut sent = 0;
        while sent < half {
            let count = sizes.next().unwrap().min(half - sent);
            server.receive(&client.output()[..count]).unwrap();
            client.consume_output(count);
            sent += count;
        }
        let err = server.receive_eof();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        drop(client);
        drop(server);
    });
    assert_eq!(freed, 0, "freed blocks still contained part of a token");
}

fn startup_message(user: &[u8]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for part in [&b"user"[..], user, b"database", b"postgres"] {
        body.extend_from_slice(part);
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

/// Feeds `packet` to an acceptor one byte at a time and returns it when it
/// has classified the packet.
fn accept_byte_by_byte(packet: &[u8]) -> Connection {
    let mut conn = Connection::new_acceptor(AcceptorSettings::default());
    conn.set_transport(Box::new(BufferTransport::new())).unwrap();
    for byte in packet.chunks(1) {
        conn.buffers().unwrap().feed(byte);
        match conn.connect_poll() {
            Polling::Reading => {}
            Polling::Ok => break,
            other => panic!("acceptor returned {other:?}: {:?}", conn.error_message()),
        }
    }
    conn
}

#[test]
fn acceptor_startup_packets_zeroed() {
    let _serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let user: Vec<u8> = MARKER.iter().cycle().take(2_000).copied().collect();
    let message = startup_message(&user);
    let mut cancel = vec![0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e];
    cancel.extend_from_slice(&CANCEL_PID_AND_KEY);

    let freed = freed_with_marker(|| {
        let conn = accept_byte_by_byte(&message);
        assert_eq!(conn.outcome(), Outcome::NotRequested);
        assert_eq!(&conn.startup_packet().unwrap().bytes[..], &message[..]);
        drop(conn);

        let conn = accept_byte_by_byte(&cancel);
        assert_eq!(conn.outcome(), Outcome::NotRequested);
        assert_eq!(&conn.startup_packet().unwrap().bytes[..], &cancel[..]);
        drop(conn);
    });
    assert_eq!(freed, 0, "freed blocks still contained a startup packet");
}
