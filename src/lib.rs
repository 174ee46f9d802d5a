//! pggssenc: GSSAPI (Kerberos) session encryption for PostgreSQL connections.
//!
//! The crate is layered so that each layer can be read and tested alone:
//!
//! - [`core`]: the sans-IO protocol core. Negotiation state machine and packet
//!   framing over byte buffers; it makes no system calls and reaches GSSAPI
//!   only through the [`core::SecurityContext`] trait.
//! - [`gss`]: the one module that calls GSSAPI (MIT krb5 through libgssapi-sys).
//! - [`io`]: adapters that move bytes between the core and a transport: a
//!   caller-owned file descriptor or caller-supplied callbacks.
//! - [`conn`]: a client connection that ties configuration, core, GSSAPI and a
//!   transport together.
//! - [`config`]: libpq-compatible parameters (conninfo strings, URIs and the
//!   PG* environment variables).
//! - `ffi`: the C ABI. It alone contains `extern "C"` functions, NULL checks,
//!   the panic boundary and the numeric error codes.

pub mod config;
pub mod conn;
pub mod core;
pub mod error;
pub mod gss;
pub mod io;

mod ffi;

pub use error::{Error, ErrorKind};
