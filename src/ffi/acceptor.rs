//! C functions for the acceptor role: a server, proxy or pooler that accepts
//! GSSAPI-encrypted connections from PostgreSQL clients. An acceptor is a
//! `pggss_conn` too; reading, writing and the information functions are
//! shared with the client role.

use super::conn::{invalid_utf8, null_argument, pggss_conn, poll, result_code, write_principal};
use super::result::pggss_result;
use crate::conn::{AcceptorSettings, Connection};
use crate::core::StartupKind;
use crate::error::Error;
use std::ffi::{c_char, c_int};

/// Kind of the first packet a client sent.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum pggss_startup_kind {
    GssencRequest = 1,
    SslRequest = 2,
    CancelRequest = 3,
    /// A StartupMessage of protocol version 3.x.
    StartupMessage = 4,
}

/// Creates an acceptor for one accepted client connection. Configure it
/// (`pggss_acceptor_set_keytab`, `pggss_acceptor_set_service`,
/// `pggss_acceptor_set_decline`), give it the accepted socket
/// (`pggss_conn_set_fd`, `pggss_conn_set_callbacks` or
/// `pggss_conn_use_buffers`), then drive it with `pggss_conn_accept_poll`.
///
/// On success, stores the acceptor in `*conn_out`; the caller owns it and
/// releases it with `pggss_conn_free`. `*conn_out` is written only on
/// success. Returns PGGSS_RESULT_OK or PGGSS_RESULT_NULL_PARAMETER.
#[no_mangle]
pub extern "C" fn pggss_acceptor_new(conn_out: *mut *mut pggss_conn) -> pggss_result {
    panic_boundary!(pggss_result::Panic, {
        let conn_out = try_mut!(conn_out, pggss_result::NullParameter);
        *conn_out = Box::into_raw(pggss_conn::new(Connection::new_acceptor(AcceptorSettings::default())));
        pggss_result::Ok
    })
}

/// Sets the keytab to accept with, the equivalent of PostgreSQL's
/// krb_server_keyfile, such as "/etc/postgresql/krb5.keytab" or
/// "FILE:/path". Without it, the default keytab (KRB5_KTNAME) is used. The
/// setting is per acceptor; no environment variable changes. `path` is
/// borrowed during the call. Only before the first `pggss_conn_accept_poll`.
///
/// Returns PGGSS_RESULT_OK, PGGSS_RESULT_NULL_PARAMETER,
/// PGGSS_RESULT_INVALID_PARAMETER or PGGSS_RESULT_INVALID_STATE.
#[no_mangle]
pub extern "C" fn pggss_acceptor_set_keytab(conn: *mut pggss_conn, path: *const c_char) -> pggss_result {
    panic_boundary!(pggss_result::Panic, {
        let conn = try_mut!(conn, pggss_result::NullParameter);
        let path = try_str!(path, null_argument(conn, "path"), invalid_utf8(conn, "keytab path"));
        let path = path.to_string();
        let result = conn.connection.acceptor_settings_mut().map(|settings| settings.keytab = Some(path));
        result_code(conn.finish(result))
    })
}

/// Restricts acceptance to one host-based service, such as
/// "postgres@db.example.com" (krbsrvname@host). Without it, any key in the
/// keytab may accept, as in PostgreSQL. `service` is borrowed during the
/// call. Only before the first `pggss_conn_accept_poll`.
///
/// Returns PGGSS_RESULT_OK, PGGSS_RESULT_NULL_PARAMETER,
/// PGGSS_RESULT_INVALID_PARAMETER (no '@') or PGGSS_RESULT_INVALID_STATE.
#[no_mangle]
pub extern "C" fn pggss_acceptor_set_service(conn: *mut pggss_conn, service: *const c_char) -> pggss_result {
    panic_boundary!(pggss_result::Panic, {
        let conn = try_mut!(conn, pggss_result::NullParameter);
        let service = try_str!(service, null_argument(conn, "service"), invalid_utf8(conn, "service name"));
        let result = if service.split_once('@').is_some_and(|(name, host)| !name.is_empty() && !host.is_empty()) {
            let service = service.to_string();
            conn.connection.acceptor_settings_mut().map(|settings| settings.service = Some(service))
        } else {
            Err(Error::new(
                crate::ErrorKind::InvalidParameter,
                format!("invalid service name \"{}\"; expected service@host, such as postgres@db.example.com", service.escape_debug()),
            ))
        };
        result_code(conn.finish(result))
    })
}

/// With `decline` true, answers GSSENCRequest with 'N', as a server without
/// GSSAPI encryption does; the client then continues in plaintext (or with
/// an SSLRequest) and its next packet is read. The default is false: answer
/// 'G' and accept. Only before the first `pggss_conn_accept_poll`.
///
/// Returns PGGSS_RESULT_OK, PGGSS_RESULT_NULL_PARAMETER or
/// PGGSS_RESULT_INVALID_STATE.
#[no_mangle]
pub extern "C" fn pggss_acceptor_set_decline(conn: *mut pggss_conn, decline: bool) -> pggss_result {
    panic_boundary!(pggss_result::Panic, {
        let conn = try_mut!(conn, pggss_result::NullParameter);
        let result = conn.connection.acceptor_settings_mut().map(|settings| settings.decline = decline);
        result_code(conn.finish(result))
    })
}

/// Drives an acceptor: reads the client's first packet; for a
/// GSSENCRequest, answers it and runs the GSSAPI handshake. Returns a
/// `pggss_polling_status` as an int, with libpq's numbers: _READING or
/// _WRITING means wait for the socket and call again, _OK means done (see
/// `pggss_conn_outcome`), _FAILED means the client is to be disconnected
/// (see `pggss_conn_error_message`; also for NULL).
///
/// Outcomes: PGGSS_OUTCOME_ENCRYPTED (read the client's StartupMessage with
/// `pggss_conn_read`); PGGSS_OUTCOME_NOT_REQUESTED or _DECLINED (the
/// client's packet is available from `pggss_conn_startup_packet`).
/// Failures include bytes sent after the GSSENCRequest or between handshake
/// tokens (PGGSS_RESULT_PLAINTEXT_INJECTION), malformed startup packets
/// (PGGSS_RESULT_INVALID_STARTUP_PACKET), oversize tokens
/// (PGGSS_RESULT_PACKET_TOO_LARGE) and GSSAPI errors. pggssenc sets no
/// timeout: a caller that must bound a stalled handshake polls with its own.
#[no_mangle]
pub extern "C" fn pggss_conn_accept_poll(conn: *mut pggss_conn) -> c_int {
    panic_boundary!(super::conn::pggss_polling_status::Failed as c_int, {
        let conn = try_mut!(conn, super::conn::pggss_polling_status::Failed as c_int);
        if !conn.connection.is_acceptor() {
            let err = Error::invalid_state("this is a client connection: drive it with pggss_conn_connect_poll");
            let _ = conn.finish::<()>(Err(err));
            return super::conn::pggss_polling_status::Failed as c_int;
        }
        poll(conn)
    })
}

/// Gives access to the client's packet when the outcome is
/// PGGSS_OUTCOME_NOT_REQUESTED or _DECLINED: its kind, and the bytes the
/// client sent from the packet's start on (the packet, then anything the
/// client sent after it, which the caller must process too). `*packet_len`
/// receives the packet's own length. The bytes belong to the connection and
/// stay valid until `pggss_conn_free`. Any out-pointer may be NULL to skip
/// it.
///
/// Returns PGGSS_RESULT_OK, PGGSS_RESULT_NULL_PARAMETER or
/// PGGSS_RESULT_INVALID_STATE when no packet was kept.
#[no_mangle]
pub extern "C" fn pggss_conn_startup_packet(
    conn: *const pggss_conn,
    kind_out: *mut pggss_startup_kind,
    data_out: *mut *const u8,
    len_out: *mut usize,
    packet_len_out: *mut usize,
) -> pggss_result {
    panic_boundary!(pggss_result::Panic, {
        let conn = try_ref!(conn, pggss_result::NullParameter);
        let Some(packet) = conn.connection.startup_packet() else {
            return pggss_result::InvalidState;
        };
        let kind = match packet.kind {
            StartupKind::GssEncRequest => pggss_startup_kind::GssencRequest,
            StartupKind::SslRequest => pggss_startup_kind::SslRequest,
            StartupKind::CancelRequest => pggss_startup_kind::CancelRequest,
            StartupKind::StartupMessage => pggss_startup_kind::StartupMessage,
        };
        // SAFETY: each pointer is either NULL (skipped) or valid for a write,
        // as the caller promises.
        unsafe {
            if !kind_out.is_null() {
                *kind_out = kind;
            }
            if !data_out.is_null() {
                *data_out = packet.bytes.as_ptr();
            }
            if !len_out.is_null() {
                *len_out = packet.bytes.len();
            }
            if !packet_len_out.is_null() {
                *packet_len_out = packet.length;
            }
        }
        pggss_result::Ok
    })
}

/// Writes the authenticated client's principal without its realm (the user
/// name PostgreSQL derives with include_realm=0, such as "alice" for
/// "alice@EXAMPLE.COM") into `buf`, as `pggss_conn_client_principal` does.
/// Same results and ownership rules.
#[no_mangle]
pub extern "C" fn pggss_conn_client_user(
    conn: *const pggss_conn,
    buf: *mut c_char,
    len: usize,
    len_out: *mut usize,
) -> pggss_result {
    panic_boundary!(pggss_result::Panic, { write_principal(conn, buf, len, len_out, strip_realm) })
}

/// Removes the realm: everything from the last '@' that is not escaped with
/// a backslash (enterprise principals display as "user\@domain@REALM").
fn strip_realm(principal: &str) -> &str {
    let bytes = principal.as_bytes();
    for index in (0..bytes.len()).rev() {
        if bytes[index] == b'@' && (index == 0 || bytes[index - 1] != b'\\') {
            return &principal[..index];
        }
    }
    principal
}

/// Stores the credentials the client delegated (gssdelegation=1 on the
/// client) into the credential cache `ccache`, such as
/// "FILE:/run/proxy/cc-1234" or "MEMORY:session-1234", so that the session
/// can act for the client. Per connection; no environment variable changes.
/// `ccache` is borrowed during the call.
///
/// Returns PGGSS_RESULT_OK, PGGSS_RESULT_NULL_PARAMETER,
/// PGGSS_RESULT_INVALID_STATE (no delegated credentials, see
/// `pggss_conn_credentials_delegated`) or PGGSS_RESULT_GSS_FAILURE.
#[no_mangle]
pub extern "C" fn pggss_conn_store_delegated_credentials(
    conn: *mut pggss_conn,
    ccache: *const c_char,
) -> pggss_result {
    panic_boundary!(pggss_result::Panic, {
        let conn = try_mut!(conn, pggss_result::NullParameter);
        let ccache = try_str!(ccache, null_argument(conn, "ccache"), invalid_utf8(conn, "credential cache name"));
        let result = conn.connection.store_delegated_credentials(ccache);
        result_code(conn.finish(result))
    })
}

#[cfg(test)]
mod tests {
    use super::strip_realm;

    #[test]
    fn strip_realm_cases() {
        assert_eq!(strip_realm("alice@EXAMPLE.COM"), "alice");
        assert_eq!(strip_realm("alice"), "alice");
        assert_eq!(strip_realm("alice\\@corp.example@EXAMPLE.COM"), "alice\\@corp.example");
        assert_eq!(strip_realm("svc/host@R"), "svc/host");
    }
}
