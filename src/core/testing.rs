//! A transparent stand-in for a GSSAPI mechanism, for unit tests of the core.
//! It "encrypts" by XOR and appends a fixed trailer, so that tests can build
//! server packets byte by byte. Tests of real GSSAPI run against the fixture.

use super::context::{Granted, SecurityContext, Step};
use crate::error::{Error, ErrorKind};

pub const KEY: u8 = 0x5a;
/// Bytes a wrapped token adds to its plaintext: a confidentiality flag and
/// an 11-byte trailer.
pub const OVERHEAD: usize = 12;
const TRAILER: [u8; 11] = *b"test-mic-ok";

pub struct TestContext {
    /// Number of server tokens the handshake takes before it completes.
    pub server_rounds: usize,
    pub granted: Granted,
    pub steps: usize,
}

impl TestContext {
    pub fn new(server_rounds: usize) -> Self {
        TestContext {
            server_rounds,
            granted: Granted { mutual_authentication: true, confidentiality: true, integrity: true, delegation: false },
            steps: 0,
        }
    }
}

/// The token the client sends at step `n`, counting from 1.
pub fn client_token(n: usize) -> Vec<u8> {
    format!("client-token-{n}").into_bytes()
}

/// The token the server sends in round `n`, counting from 1.
pub fn server_token(n: usize) -> Vec<u8> {
    format!("server-token-{n}").into_bytes()
}

/// Wraps `plaintext` the way the peer would, with the given conf flag.
pub fn seal(plaintext: &[u8], confidential: bool) -> Vec<u8> {
    let mut token = vec![confidential as u8];
    token.extend(plaintext.iter().map(|b| b ^ KEY));
    token.extend_from_slice(&TRAILER);
    token
}

/// Wraps `plaintext` into a complete packet: length word, then token.
pub fn packet(plaintext: &[u8], confidential: bool) -> Vec<u8> {
    let token = seal(plaintext, confidential);
    let mut out = (token.len() as u32).to_be_bytes().to_vec();
    out.extend(token);
    out
}

/// Decodes a stream of packets written by the client back to plaintext,
/// checking each packet's size against the protocol limit.
pub fn open_stream(mut stream: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut plaintext = Vec::new();
    let mut sizes = Vec::new();
    while !stream.is_empty() {
        let length = u32::from_be_bytes(stream[..4].try_into().unwrap()) as usize;
        sizes.push(length + 4);
        let token = &stream[4..4 + length];
        assert_eq!(token[0], 1, "client packet without confidentiality");
        assert_eq!(&token[token.len() - TRAILER.len()..], &TRAILER);
        plaintext.extend(token[1..token.len() - TRAILER.len()].iter().map(|b| b ^ KEY));
        stream = &stream[4 + length..];
    }
    (plaintext, sizes)
}

impl SecurityContext for TestContext {
    fn step(&mut self, input: Option<&[u8]>) -> Result<Step, Error> {
        if let Some(token) = input {
            if token != server_token(self.steps).as_slice() {
                return Err(Error::new(ErrorKind::Gss, "test mechanism: defective token"));
            }
        }
        self.steps += 1;
        if self.steps > self.server_rounds {
            return Ok(Step { token: Vec::new(), complete: Some(self.granted) });
        }
        Ok(Step { token: client_token(self.steps), complete: None })
    }

    fn wrap(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        out.extend(seal(plaintext, true));
        Ok(())
    }

    fn unwrap(&mut self, token: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if token.len() < OVERHEAD || !token.ends_with(&TRAILER) {
            return Err(Error::new(ErrorKind::Gss, "test mechanism: token does not verify"));
        }
        if token[0] != 1 {
            return Err(Error::new(ErrorKind::NoConfidentiality, "test mechanism: conf_state 0"));
        }
        out.extend(token[1..token.len() - TRAILER.len()].iter().map(|b| b ^ KEY));
        Ok(())
    }

    fn max_plaintext(&mut self, max_token_size: usize) -> Result<usize, Error> {
        Ok(max_token_size - OVERHEAD)
    }
}
