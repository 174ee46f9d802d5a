//! C functions on a connection, `pggss_conn`, shared by both roles, and the
//! client-role functions.

use super::result::{pggss_result, write_c_string};
use crate::conn::{Connection, Outcome, Polling};
use crate::config::Params;
use crate::error::{Error, ErrorKind};
use crate::io::{BufferTransport, CallbackTransport, FdTransport};
use std::ffi::{c_char, c_int, c_void, CString};
use std::io;

/// A connection in the client role (`pggss_conn_new`) or the acceptor role
/// (`pggss_acceptor_new`): parameters, the negotiation state, the packet
/// layer and a transport (a socket, callbacks or buffers) that the caller
/// owns. Release it with `pggss_conn_free`.
///
/// Thread safety: a connection may move between threads, but calls on one
/// connection must not overlap; the caller serialises them. Distinct
/// connections share no mutable state and may be used in parallel.
pub struct pggss_conn {
    pub(super) connection: Connection,
    /// The text returned by `pggss_conn_error_message`, refreshed after
    /// every call that can change it.
    message: CString,
    last_result: pggss_result,
}

impl pggss_conn {
    pub(super) fn new(connection: Connection) -> Box<pggss_conn> {
        Box::new(pggss_conn { connection, message: CString::default(), last_result: pggss_result::Ok })
    }

    /// Records the result of a call as the connection's last result and,
    /// for an error other than would-block, as its last error message.
    pub(super) fn finish<T>(&mut self, result: Result<T, Error>) -> Result<T, Error> {
        self.last_result = match &result {
            Ok(_) => pggss_result::Ok,
            Err(err) => err.kind().into(),
        };
        if let Err(err) = &result {
            if err.kind() != ErrorKind::WouldBlock {
                self.connection.record_error(err.clone());
            }
        }
        self.refresh_message();
        result
    }

    fn refresh_message(&mut self) {
        let text = self.connection.error_message().unwrap_or("");
        // Messages never contain NUL: they are built from Rust strings and
        // GSSAPI status text, and any NUL is replaced to be sure.
        self.message = CString::new(text.replace('\0', "\u{fffd}")).unwrap_or_default();
    }
}

/// How `pggss_conn_connect_poll` asks to be called again; the numbers equal
/// libpq's PostgresPollingStatusType.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum pggss_polling_status {
    /// Negotiation failed: see `pggss_conn_error_message`.
    Failed = 0,
    /// Wait until the socket is readable, then call again.
    Reading = 1,
    /// Wait until the socket is writable, then call again.
    Writing = 2,
    /// Negotiation is over: see `pggss_conn_outcome`.
    Ok = 3,
}

/// How negotiation ended.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum pggss_outcome {
    /// Negotiation has not ended.
    Pending = 0,
    /// The connection is GSSAPI-encrypted: send the StartupMessage with
    /// `pggss_conn_write`.
    Encrypted = 1,
    /// gssencmode=prefer and the server answered 'N': the socket carries
    /// plaintext; continue with a StartupMessage or an SSLRequest.
    ServerDeclined = 2,
    /// gssencmode=prefer and no Kerberos credentials: nothing was sent and
    /// the socket is untouched.
    NoCredentials = 3,
    /// gssencmode=disable: nothing was sent.
    Disabled = 4,
    /// Negotiation failed; the socket is not usable.
    Failed = 5,
    /// Acceptor: the client's first packet was not a GSSENCRequest; it is
    /// available from `pggss_conn_startup_packet`, and the socket carries
    /// plaintext.
    NotRequested = 6,
    /// Acceptor: the GSSENCRequest was declined with 'N' (see
    /// `pggss_acceptor_set_decline`), and the client's next packet is
    /// available from `pggss_conn_startup_packet`.
    Declined = 7,
}

/// Reads up to `len` bytes into `buf`. Returns the number of bytes read, 0
/// at orderly end of stream, or -1 after storing an errno value in `*err`
/// (EAGAIN or EWOULDBLOCK when no data is ready on a non-blocking
/// transport). `buf` and `err` are valid only during the call.
pub type pggss_read_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, buf: *mut u8, len: usize, err: *mut c_int) -> libc::ssize_t>;

/// Writes up to `len` bytes from `buf`. Returns the number of bytes
/// accepted (at least 1), or -1 after storing an errno value in `*err`
/// (EAGAIN or EWOULDBLOCK when the transport is full). `buf` and `err` are
/// valid only during the call.
pub type pggss_write_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, buf: *const u8, len: usize, err: *mut c_int) -> libc::ssize_t>;

/// Creates a client connection with no parameters set: the PG* environment
/// variables (PGHOST, PGKRBSRVNAME, PGGSSENCMODE, PGGSSDELEGATION) and
/// libpq's defaults supply them when negotiation starts.
///
/// On success, stores a new connection in `*conn_out`; the caller owns it
/// and must release it with `pggss_conn_free`. `*conn_out` is written only
/// on success. Returns PGGSS_RESULT_OK or PGGSS_RESULT_NULL_PARAMETER.
#[no_mangle]
pub extern "C" fn pggss_conn_new(conn_out: *mut *mut pggss_conn) -> pggss_result {
    panic_boundary!(pggss_result::Panic, {
        let conn_out = try_mut!(conn_out, pggss_result::NullParameter);
        *conn_out = Box::into_raw(pggss_conn::new(Connection::new(Params::new())));
        pggss_result::Ok
    })
}

/// Releases a connection and everything it holds, zeroing buffers that held
/// plaintext. The caller's socket is not closed. NULL is accepted and
/// ignored. `conn` must not be used afterwards.
#[no_mangle]
pub extern "C" fn pggss_conn_free(conn: *mut pggss_conn) {
    panic_boundary!((), {
        if !conn.is_null() {
            // SAFETY: `conn` came from `pggss_conn_new` and is freed once.
            drop(unsafe { Box::from_raw(conn) });
        }
    })
}

/// Sets one parameter by its libpq name. After a rejected parameter the
/// connection refuses to connect, as libpq does, so that a typo cannot turn
/// gssencmode=require into the default "prefer". Parameters: "host", "krbsrvname",
/// "gssencmode", "gssdelegation", or "ccache" (a credential cache name such
/// as "FILE:/tmp/krb5cc"; the default cache when unset). Explicit parameters
/// win over the environment. Only before the first
/// `pggss_conn_connect_poll`.
///
/// `key` and `value` are NUL-terminated UTF-8 strings, borrowed during the
/// call. Returns PGGSS_RESULT_OK, PGGSS_RESULT_NULL_PARAMETER,
/// PGGSS_RESULT_INVALID_PARAMETER (unknown key or invalid value; see
/// `pggss_conn_error_message`) or PGGSS_RESULT_INVALID_STATE.
#[no_mangle]
pub extern "C" fn pggss_conn_set_param(
    conn: *mut pggss_conn,
    key: *const c_char,
    value: *const c_char,
) -> pggss_result {
    panic_boundary!(pggss_result::Panic, {
        let conn = try_mut!(conn, pggss_result::NullParameter);
        let key = try_str!(key, null_argument(conn, "key"), invalid_utf8(conn, "parameter name"));
        let value = try_str!(value, null_argument(conn, "value"), invalid_utf8(conn, "parameter value"));
        let result = conn.connection.set_param(key, value);
        result_code(conn.finish(result))
    })
}

/// Takes the parameters this library uses from a libpq connection string,
/// in `key=value` form or as a `postgresql://` URI; other keys (dbname,
/// user, sslmode, ...) are ignored. Only before the first
/// `pggss_conn_connect_poll`.
///
/// `conninfo` is a NUL-terminated UTF-8 string, borrowed during the call.
/// Nothing is taken when it is malformed. Returns PGGSS_RESULT_OK,
/// PGGSS_RESULT_NULL_PARAMETER, PGGSS_RESULT_INVALID_PARAMETER or
/// PGGSS_RESULT_INVALID_STATE.
#[no_mangle]
pub extern "C" fn pggss_conn_set_conninfo(conn: *mut pggss_conn, conninfo: *const c_char) -> pggss_result {
    panic_boundary!(pggss_result::Panic, {
        let conn = try_mut!(conn, pggss_result::NullParameter);
        let conninfo = try_str!(conninfo, null_argument(conn, "conninfo"), invalid_utf8(conn, "connection string"));
        let result = conn.connection.set_conninfo(conninfo);
        result_code(conn.finish(result))
    })
}

/// Uses `fd`, a connected socket the caller owns, as the transport. The
/// socket may be blocking or non-blocking; pggssenc never closes it nor
/// changes its flags, and the caller must keep it open until
/// `pggss_conn_free`. Only before the first `pggss_conn_connect_poll`.
///
/// Returns PGGSS_RESULT_OK, PGGSS_RESULT_NULL_PARAMETER,
/// PGGSS_RESULT_INVALID_PARAMETER (negative fd) or PGGSS_RESULT_INVALID_STATE.
#[no_mangle]
pub extern "C" fn pggss_conn_set_fd(conn: *mut pggss_conn, fd: c_int) -> pggss_result {
    panic_boundary!(pggss_result::Panic, {
        let conn = try_mut!(conn, pggss_result::NullParameter);
        if fd < 0 {
            let err = Error::new(ErrorKind::InvalidParameter, format!("invalid file descriptor {fd}"));
            return result_code(conn.finish::<()>(Err(err)));
        }
        let result = conn.connection.set_transport(Box::new(FdTransport::new(fd)));
        result_code(conn.finish(result))
    })
}

/// Uses caller-supplied functions as the transport, for streams that are
/// not a plain socket. Each callback receives `userdata` unchanged;
/// `userdata` may be NULL and must stay valid until `pggss_conn_free`.
/// The callbacks are called only from within pggssenc calls on this
/// connection, on the calling thread. Only before the first
/// `pggss_conn_connect_poll`.
///
/// Returns PGGSS_RESULT_OK, PGGSS_RESULT_NULL_PARAMETER (a NULL callback)
/// or PGGSS_RESULT_INVALID_STATE.
#[no_mangle]
pub extern "C" fn pggss_conn_set_callbacks(
    conn: *mut pggss_conn,
    read: pggss_read_callback,
    write: pggss_write_callback,
    userdata: *mut c_void,
) -> pggss_result {
    panic_boundary!(pggss_result::Panic, {
        let conn = try_mut!(conn, pggss_result::NullParameter);
        let Some(read) = read else {
            return null_argument(conn, "read");
        };
        let Some(write) = write else {
            return null_argument(conn, "write");
        };
        let userdata = UserData(userdata);
        let transport = CallbackTransport::new(
            move |buf: &mut [u8]| {
                let userdata = &userdata;
                let mut err: c_int = 0;
                // SAFETY: the caller promised a valid callback and userdata.
                let count = unsafe { read(userdata.0, buf.as_mut_ptr(), buf.len(), &mut err) };
                callback_result(count, err)
            },
            move |buf: &[u8]| {
                let userdata = &userdata;
                let mut err: c_int = 0;
                // SAFETY: as above.
                let count = unsafe { write(userdata.0, buf.as_ptr(), buf.len(), &mut err) };
                callback_result(count, err)
            },
        );
        let result = conn.connection.set_transport(Box::new(transport));
        result_code(conn.finish(result))
    })
}

/// Uses two in-memory queues as the transport, for callers that move bytes
/// themselves (the sans-IO buffer API): feed bytes received from the network
/// with `pggss_conn_feed`, take bytes to send with `pggss_conn_take_output`,
/// and drive the connection with the usual poll, read and write calls, which
/// return READING or EAGAIN when they need more fed bytes and WRITING or
/// EAGAIN when 256 KiB of output wait to be taken. Only before the first
/// `pggss_conn_connect_poll`.
///
/// Returns PGGSS_RESULT_OK, PGGSS_RESULT_NULL_PARAMETER or
/// PGGSS_RESULT_INVALID_STATE.
#[no_mangle]
pub extern "C" fn pggss_conn_use_buffers(conn: *mut pggss_conn) -> pggss_result {
    panic_boundary!(pggss_result::Panic, {
        let conn = try_mut!(conn, pggss_result::NullParameter);
        let result = conn.connection.set_transport(Box::new(BufferTransport::new()));
        result_code(conn.finish(result))
    })
}

/// Feeds `len` bytes received from the network; the bytes are copied and
/// `data` is borrowed during the call only. With `len` 0, `data` may be
/// NULL. Returns PGGSS_RESULT_OK, PGGSS_RESULT_NULL_PARAMETER, or
/// PGGSS_RESULT_INVALID_STATE when the connection does not use buffers.
#[no_mangle]
pub extern "C" fn pggss_conn_feed(conn: *mut pggss_conn, data: *const u8, len: usize) -> pggss_result {
    panic_boundary!(pggss_result::Panic, {
        let conn = try_mut!(conn, pggss_result::NullParameter);
        if data.is_null() && len > 0 {
            return null_argument(conn, "data");
        }
        let Some(buffers) = conn.connection.buffers() else {
            return pggss_result::InvalidState;
        };
        if len > 0 {
            // SAFETY: the caller promises `data` is valid for `len` bytes.
            buffers.feed(unsafe { std::slice::from_raw_parts(data, len) });
        }
        pggss_result::Ok
    })
}

/// Records that the network stream ended: once the fed bytes are consumed,
/// reads return 0 (or fail when a packet is incomplete). Returns
/// PGGSS_RESULT_OK, PGGSS_RESULT_NULL_PARAMETER or PGGSS_RESULT_INVALID_STATE.
#[no_mangle]
pub extern "C" fn pggss_conn_feed_eof(conn: *mut pggss_conn) -> pggss_result {
    panic_boundary!(pggss_result::Panic, {
        let conn = try_mut!(conn, pggss_result::NullParameter);
        let Some(buffers) = conn.connection.buffers() else {
            return pggss_result::InvalidState;
        };
        buffers.feed_eof();
        pggss_result::Ok
    })
}

/// Moves up to `len` bytes that are waiting to be sent into `buf` and
/// returns how many were moved; the caller must send them in order. Returns
/// 0 when nothing waits, for NULL arguments, and when the connection does
/// not use buffers. `buf` is borrowed during the call only.
#[no_mangle]
pub extern "C" fn pggss_conn_take_output(conn: *mut pggss_conn, buf: *mut u8, len: usize) -> usize {
    panic_boundary!(0, {
        let conn = try_mut!(conn, 0);
        if buf.is_null() || len == 0 {
            return 0;
        }
        let Some(buffers) = conn.connection.buffers() else {
            return 0;
        };
        // SAFETY: the caller promises `buf` is valid for `len` bytes.
        buffers.take_output(unsafe { std::slice::from_raw_parts_mut(buf, len) })
    })
}

/// Returns the number of bytes waiting to be taken with
/// `pggss_conn_take_output`; 0 for NULL or without buffers.
#[no_mangle]
pub extern "C" fn pggss_conn_output_pending(conn: *mut pggss_conn) -> usize {
    panic_boundary!(0, {
        let conn = try_mut!(conn, 0);
        conn.connection.buffers().map_or(0, |buffers| buffers.outbound_len())
    })
}

/// Returns the minimum number of bytes the connection needs from the
/// network to make progress, beyond those already fed or received: 1 while
/// waiting for the response to GSSENCRequest, then the rest of the current
/// packet. Returns 0 when no read is needed (decrypted bytes are buffered,
/// or negotiation has not started or fell back to plaintext) and for NULL.
#[no_mangle]
pub extern "C" fn pggss_conn_wanted(conn: *mut pggss_conn) -> usize {
    panic_boundary!(0, {
        let conn = try_mut!(conn, 0);
        conn.connection.wanted()
    })
}

/// The caller's userdata pointer, moved into the callback closures.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);

// SAFETY: the pointer is only handed back to the caller's callbacks, on the
// thread that calls into the connection; the caller owns what it points to.
unsafe impl Send for UserData {}

fn callback_result(count: libc::ssize_t, err: c_int) -> io::Result<usize> {
    if count >= 0 {
        return Ok(count as usize);
    }
    let errno = if err == 0 { libc::EIO } else { err };
    Err(io::Error::from_raw_os_error(errno))
}

/// Advances negotiation: sends GSSENCRequest, reads the response, runs the
/// GSSAPI handshake. Returns a `pggss_polling_status` as an int, with
/// libpq's numbers: PGGSS_POLLING_STATUS_READING or _WRITING means wait
/// for the socket (poll(2) on the fd) and call again; _OK means negotiation
/// is over (see `pggss_conn_outcome`); _FAILED means it failed (see
/// `pggss_conn_error_message`; also for a NULL `conn`). On a blocking
/// socket the first call finishes, but pggssenc sets no timeout: a server
/// that never answers blocks it until the socket's own timeout
/// (SO_RCVTIMEO), after which it returns _READING as on a non-blocking
/// socket. Bound negotiation with SO_RCVTIMEO and SO_SNDTIMEO, or with a
/// non-blocking socket and poll(2) timeouts.
///
/// Under gssencmode=prefer, a server that declines ('N'), missing
/// credentials and gssencmode=disable all end in _OK with the socket in
/// plaintext; under "require" they end in _FAILED. An 'E' answer always
/// fails: the socket is then unusable. So does any failure after the server
/// answered 'G', under "prefer" too, because the server then expects GSSAPI
/// tokens: as with libpq, the caller connects again, without GSS encryption
/// if it so chooses.
#[no_mangle]
pub extern "C" fn pggss_conn_connect_poll(conn: *mut pggss_conn) -> c_int {
    panic_boundary!(pggss_polling_status::Failed as c_int, {
        let conn = try_mut!(conn, pggss_polling_status::Failed as c_int);
        if conn.connection.is_acceptor() {
            let err = Error::invalid_state("this is an acceptor: drive it with pggss_conn_accept_poll");
            let _ = conn.finish::<()>(Err(err));
            return pggss_polling_status::Failed as c_int;
        }
        poll(conn)
    })
}

pub(super) fn poll(conn: &mut pggss_conn) -> c_int {
    let polling = conn.connection.connect_poll();
    conn.last_result = match polling {
        Polling::Failed => conn.connection.last_error().map_or(pggss_result::InvalidState, |err| err.kind().into()),
        Polling::Reading | Polling::Writing => pggss_result::WouldBlock,
        Polling::Ok => pggss_result::Ok,
    };
    conn.refresh_message();
    let status = match polling {
        Polling::Failed => pggss_polling_status::Failed,
        Polling::Reading => pggss_polling_status::Reading,
        Polling::Writing => pggss_polling_status::Writing,
        Polling::Ok => pggss_polling_status::Ok,
    };
    status as c_int
}

/// Reads up to `len` bytes of plaintext into `buf`, with recv(2)
/// semantics: returns the number of bytes read, 0 when the server closed
/// the connection in an orderly way, or -1 with errno set. errno EAGAIN
/// (or EWOULDBLOCK) means no complete packet is available yet on a
/// non-blocking socket: wait for readability and call again. Other errors
/// are final: EINVAL for a NULL argument or a call before negotiation
/// finished, the transport's errno for a socket error, ECONNRESET for a
/// protocol or GSSAPI failure; `pggss_conn_last_result` and
/// `pggss_conn_error_message` tell which.
///
/// On an encrypted connection every packet is unwrapped and checked for
/// confidentiality before any of its bytes are returned. After a fallback
/// to plaintext under gssencmode=prefer, bytes pass through unchanged.
/// Check `pggss_conn_pending` before waiting on the socket: decrypted bytes
/// may already be buffered. `buf` is borrowed during the call.
#[no_mangle]
pub extern "C" fn pggss_conn_read(conn: *mut pggss_conn, buf: *mut c_void, len: usize) -> libc::ssize_t {
    panic_boundary!(fail_with_errno(libc::EIO), {
        let conn = try_mut!(conn, fail_with_errno(libc::EINVAL));
        if buf.is_null() && len > 0 {
            null_argument(conn, "buf");
            return fail_with_errno(libc::EINVAL);
        }
        let out: &mut [u8] = if len == 0 {
            &mut []
        } else {
            // SAFETY: the caller promises `buf` is valid for `len` bytes.
            unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) }
        };
        let result = conn.connection.read(out);
        transfer_result(conn, result)
    })
}

/// Writes plaintext with send(2) semantics and libpq's pg_GSS_write retry
/// rule. Returns the number of bytes written, possibly fewer than `len`, or
/// -1 with errno set.
///
/// Data is wrapped into packets of at most 16384 bytes. A packet stays
/// queued until it is fully sent, and only bytes whose packets have all left
/// are reported as written. After -1 with EAGAIN, wait for writability and
/// call again offering the same bytes (the unreported ones, from the same
/// start), at least as many as before: a shorter offer fails with EINVAL and
/// PGGSS_RESULT_RETRY_TOO_SHORT. Other errno values are as for
/// `pggss_conn_read`. `buf` is borrowed during the call.
#[no_mangle]
pub extern "C" fn pggss_conn_write(conn: *mut pggss_conn, buf: *const c_void, len: usize) -> libc::ssize_t {
    panic_boundary!(fail_with_errno(libc::EIO), {
        let conn = try_mut!(conn, fail_with_errno(libc::EINVAL));
        if buf.is_null() && len > 0 {
            null_argument(conn, "buf");
            return fail_with_errno(libc::EINVAL);
        }
        let data: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: the caller promises `buf` is valid for `len` bytes.
            unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }
        };
        let result = conn.connection.write(data);
        transfer_result(conn, result)
    })
}

pub(super) fn transfer_result(conn: &mut pggss_conn, result: Result<usize, Error>) -> libc::ssize_t {
    match conn.finish(result) {
        Ok(count) => count as libc::ssize_t,
        Err(err) => fail_with_errno(errno_for(&err)),
    }
}

fn errno_for(err: &Error) -> c_int {
    match err.kind() {
        ErrorKind::WouldBlock => libc::EAGAIN,
        ErrorKind::Io => err.os_error().unwrap_or(libc::EIO),
        ErrorKind::InvalidState | ErrorKind::InvalidParameter | ErrorKind::RetryTooShort => libc::EINVAL,
        _ => libc::ECONNRESET,
    }
}

fn fail_with_errno(errno: c_int) -> libc::ssize_t {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = errno };
    -1
}

/// Returns how negotiation ended, or PGGSS_OUTCOME_PENDING while it runs
/// (and for a NULL `conn`).
#[no_mangle]
pub extern "C" fn pggss_conn_outcome(conn: *const pggss_conn) -> pggss_outcome {
    panic_boundary!(pggss_outcome::Failed, {
        let conn = try_ref!(conn, pggss_outcome::Pending);
        match conn.connection.outcome() {
            Outcome::Pending => pggss_outcome::Pending,
            Outcome::Encrypted => pggss_outcome::Encrypted,
            Outcome::ServerDeclined => pggss_outcome::ServerDeclined,
            Outcome::NoCredentials => pggss_outcome::NoCredentials,
            Outcome::Disabled => pggss_outcome::Disabled,
            Outcome::Failed => pggss_outcome::Failed,
            Outcome::NotRequested => pggss_outcome::NotRequested,
            Outcome::Declined => pggss_outcome::Declined,
        }
    })
}

/// Returns true when the connection is GSSAPI-encrypted, like libpq's
/// PQgssEncInUse; false otherwise and for a NULL `conn`.
#[no_mangle]
pub extern "C" fn pggss_conn_encryption_in_use(conn: *const pggss_conn) -> bool {
    panic_boundary!(false, {
        let conn = try_ref!(conn, false);
        conn.connection.encryption_in_use()
    })
}

/// Returns the GSSAPI security context (a gss_ctx_id_t), like libpq's
/// PQgetgssctx, or NULL when there is none or `conn` is NULL. The context
/// still belongs to the connection: do not delete it, and do not use it
/// after `pggss_conn_free`. Wrapping or unwrapping with it outside pggssenc
/// breaks the sequence numbers of the stream.
#[no_mangle]
pub extern "C" fn pggss_conn_gss_context(conn: *const pggss_conn) -> *mut c_void {
    panic_boundary!(std::ptr::null_mut(), {
        let conn = try_ref!(conn, std::ptr::null_mut());
        conn.connection.gss_context()
    })
}

/// Writes the client principal of an encrypted connection (such as
/// "alice@EXAMPLE.COM") into `buf` as a NUL-terminated string and its
/// length, without the NUL, into `*len_out`. For an initiator this is its
/// own principal; for an acceptor, the authenticated client's.
///
/// Returns PGGSS_RESULT_OK; PGGSS_RESULT_BUFFER_TOO_SMALL when `len` is not
/// larger than the principal's length (then `*len_out` still receives the
/// length and `buf` is untouched); PGGSS_RESULT_NULL_PARAMETER;
/// PGGSS_RESULT_INVALID_STATE when the connection is not encrypted; or
/// PGGSS_RESULT_GSS_FAILURE. `buf` and `len_out` are borrowed during the call.
#[no_mangle]
pub extern "C" fn pggss_conn_client_principal(
    conn: *const pggss_conn,
    buf: *mut c_char,
    len: usize,
    len_out: *mut usize,
) -> pggss_result {
    panic_boundary!(pggss_result::Panic, { write_principal(conn, buf, len, len_out, |principal| principal) })
}

/// Writes `select(principal)` of the client principal into `buf`, with the
/// null checks and results that `pggss_conn_client_principal` documents.
pub(super) fn write_principal(
    conn: *const pggss_conn,
    buf: *mut c_char,
    len: usize,
    len_out: *mut usize,
    select: fn(&str) -> &str,
) -> pggss_result {
    let conn = try_ref!(conn, pggss_result::NullParameter);
    let len_out = try_mut!(len_out, pggss_result::NullParameter);
    if buf.is_null() {
        return pggss_result::NullParameter;
    }
    let principal = match conn.connection.client_principal() {
        Ok(principal) => principal,
        Err(err) => return err.kind().into(),
    };
    let name = select(&principal);
    *len_out = name.len();
    if name.len() >= len {
        return pggss_result::BufferTooSmall;
    }
    write_c_string(name, buf, len);
    pggss_result::Ok
}

/// Returns true when the client's credentials were delegated to the server
/// (gssdelegation=1 and a forwardable ticket); false otherwise and for NULL.
#[no_mangle]
pub extern "C" fn pggss_conn_credentials_delegated(conn: *const pggss_conn) -> bool {
    panic_boundary!(false, {
        let conn = try_ref!(conn, false);
        conn.connection.credentials_delegated()
    })
}

/// Returns the largest plaintext that one packet carries on an encrypted
/// connection, from gss_wrap_size_limit; 0 when not encrypted or NULL.
#[no_mangle]
pub extern "C" fn pggss_conn_max_plaintext(conn: *const pggss_conn) -> usize {
    panic_boundary!(0, {
        let conn = try_ref!(conn, 0);
        conn.connection.max_plaintext()
    })
}

/// Returns nonzero when `pggss_conn_read` can make progress without reading
/// the socket: the number of decrypted bytes buffered plus the received
/// bytes that form complete packets not yet decrypted. 0 when a read needs
/// the socket, and for NULL. A caller that waits for socket readability
/// must check this first: several packets can arrive in one segment.
#[no_mangle]
pub extern "C" fn pggss_conn_pending(conn: *const pggss_conn) -> usize {
    panic_boundary!(0, {
        let conn = try_ref!(conn, 0);
        conn.connection.pending()
    })
}

/// Returns the connection's last error message, with the GSSAPI major and
/// minor status text where GSSAPI failed; after a fallback to plaintext
/// under gssencmode=prefer, the reason for it; otherwise "". Never NULL:
/// for a NULL `conn` it returns a static message. The string belongs to the
/// connection and stays valid until the next call on it.
#[no_mangle]
pub extern "C" fn pggss_conn_error_message(conn: *const pggss_conn) -> *const c_char {
    panic_boundary!(c"internal error in pggssenc".as_ptr(), {
        let conn = try_ref!(conn, c"connection pointer is NULL".as_ptr());
        conn.message.as_ptr()
    })
}

/// Returns the result of the last call on the connection that can fail
/// (set_param, set_conninfo, set_fd, set_callbacks, connect_poll, read,
/// write): PGGSS_RESULT_OK after a success, PGGSS_RESULT_WOULD_BLOCK after
/// EAGAIN. PGGSS_RESULT_NULL_PARAMETER for a NULL `conn`.
#[no_mangle]
pub extern "C" fn pggss_conn_last_result(conn: *const pggss_conn) -> pggss_result {
    panic_boundary!(pggss_result::Panic, {
        let conn = try_ref!(conn, pggss_result::NullParameter);
        conn.last_result
    })
}

pub(super) fn result_code<T>(result: Result<T, Error>) -> pggss_result {
    match result {
        Ok(_) => pggss_result::Ok,
        Err(err) => err.kind().into(),
    }
}

/// Records a NULL argument of a call on `conn` as its last result and
/// error, and returns PGGSS_RESULT_NULL_PARAMETER.
pub(super) fn null_argument(conn: &mut pggss_conn, name: &str) -> pggss_result {
    let err = Error::new(ErrorKind::NullParameter, format!("argument {name} is NULL"));
    result_code(conn.finish::<()>(Err(err)))
}

pub(super) fn invalid_utf8(conn: &mut pggss_conn, what: &str) -> pggss_result {
    let err = Error::new(ErrorKind::InvalidParameter, format!("{what} is not valid UTF-8"));
    result_code(conn.finish::<()>(Err(err)))
}
