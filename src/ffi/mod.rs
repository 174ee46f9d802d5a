//! The C ABI. Only this module contains `extern "C"` functions. Every one of
//! them checks its pointer arguments for NULL, runs its body inside the
//! panic boundary, and reports failure through `pggss_result` or, for the
//! read and write calls, -1 with errno.

// C names (pggss_conn, pggss_result) are part of the ABI.
#![allow(non_camel_case_types)]

#[macro_use]
mod boundary;
mod acceptor;
mod conn;
mod result;

use std::ffi::c_char;

/// Maximum size of a packet after the handshake, including its 4-byte length
/// word; a PostgreSQL wire-protocol constant.
pub const PGGSS_MAX_PACKET_SIZE: usize = 16384;

/// Maximum size of a handshake packet, including its 4-byte length word; a
/// PostgreSQL wire-protocol constant.
pub const PGGSS_MAX_HANDSHAKE_PACKET_SIZE: usize = 65536;

const _: () = assert!(PGGSS_MAX_PACKET_SIZE == crate::core::MAX_PACKET_SIZE);
const _: () = assert!(PGGSS_MAX_HANDSHAKE_PACKET_SIZE == crate::core::MAX_HANDSHAKE_PACKET_SIZE);

/// Returns the library version as a NUL-terminated string, such as "0.1.0".
/// The string is static: do not free it. Thread-safe.
#[no_mangle]
pub extern "C" fn pggss_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
