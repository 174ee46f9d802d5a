//! The interface between the core and a GSSAPI security context. The core
//! drives it; `crate::gss` implements it with real GSSAPI calls, and the unit
//! tests implement it with a transparent test mechanism.

use crate::error::Error;
use std::ops::Range;

/// Services that the peer granted when the security context was established.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Granted {
    pub mutual_authentication: bool,
    pub confidentiality: bool,
    pub integrity: bool,
    pub delegation: bool,
}

/// The result of one context-establishment step. The token is zeroed when
/// the step is dropped.
#[derive(Debug, Default)]
pub struct Step {
    /// Token to send to the peer; empty when there is nothing to send.
    pub token: Vec<u8>,
    /// Services granted, present once the context is complete.
    pub complete: Option<Granted>,
}

/// A GSSAPI security context as the core uses it.
pub trait SecurityContext {
    /// Runs one step of context establishment. `input` is `None` for the
    /// initiator's first step.
    fn step(&mut self, input: Option<&[u8]>) -> Result<Step, Error>;

    /// Wraps `plaintext` with confidentiality and appends the token to `out`.
    /// Fails when the mechanism did not apply confidentiality.
    fn wrap(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), Error>;

    /// Unwraps `token` and appends the plaintext to `out`. Fails, appending
    /// nothing, when the token was not protected with confidentiality or does
    /// not verify.
    fn unwrap(&mut self, token: &[u8], out: &mut Vec<u8>) -> Result<(), Error>;

    /// Unwraps `token` in place and returns the range of `token` that now
    /// holds the plaintext. Fails, as [`SecurityContext::unwrap`] does, when
    /// the token was not protected with confidentiality or does not verify;
    /// the token's bytes are then unspecified.
    fn unwrap_in_place(&mut self, token: &mut [u8]) -> Result<Range<usize>, Error> {
        let mut plaintext = Vec::with_capacity(token.len());
        let result = self.unwrap(token, &mut plaintext);
        let length = plaintext.len();
        if result.is_ok() {
            token[..length].copy_from_slice(&plaintext);
        }
        crate::core::frame::zero_vec(&mut plaintext);
        result.map(|()| 0..length)
    }

    /// Returns the largest plaintext whose wrapped token fits in
    /// `max_token_size` bytes.
    fn max_plaintext(&mut self, max_token_size: usize) -> Result<usize, Error>;
}

impl Drop for Step {
    fn drop(&mut self) {
        crate::core::frame::zero_vec(&mut self.token);
    }
}
