"""Bad input and failing servers: each ends in the PgGssError subclass, result code and library message expected."""

import errno
import socket
import threading

import pytest

import pggssenc
from pggssenc import Result


def test_invalid_gssencmode_exact_message(tcp_socket):
    sock = tcp_socket()
    with pytest.raises(pggssenc.ParameterError) as raised:
        pggssenc.wrap_socket(sock, host="localhost", gssencmode="always")
    assert raised.value.code == Result.INVALID_PARAMETER
    assert raised.value.message == (
        'invalid value for parameter "gssencmode": "always"; expected "disable", "prefer" or "require"'
    )
    assert str(raised.value) == raised.value.message
    assert isinstance(raised.value, ValueError)
    # wrap_socket owns the socket and closes it on failure.
    assert sock.fileno() == -1


def test_invalid_gssencmode_in_conninfo(tcp_socket):
    with pytest.raises(pggssenc.ParameterError) as raised:
        pggssenc.GSSSocket(tcp_socket(), conninfo="host=localhost gssencmode=maybe")
    assert raised.value.message == (
        'invalid value for parameter "gssencmode": "maybe"; expected "disable", "prefer" or "require"'
    )


def test_malformed_conninfo(tcp_socket):
    with pytest.raises(pggssenc.ParameterError) as raised:
        pggssenc.GSSSocket(tcp_socket(), conninfo="host")
    assert raised.value.code == Result.INVALID_PARAMETER
    assert raised.value.message == 'invalid connection string: missing "=" after "host"'


def test_explicit_keyword_overrides_conninfo(tcp_socket):
    gss = pggssenc.wrap_socket(tcp_socket(), conninfo="host=localhost gssencmode=disable", gssencmode="require")
    assert gss.outcome == pggssenc.Outcome.ENCRYPTED
    gss.close()


def test_missing_host(tcp_socket, monkeypatch):
    monkeypatch.delenv("PGHOST", raising=False)
    with pytest.raises(pggssenc.ParameterError) as raised:
        pggssenc.wrap_socket(tcp_socket(), gssencmode="require")
    assert raised.value.code == Result.HOST_MISSING
    assert raised.value.message.startswith("host is not set")


def test_closed_socket_rejected(tcp_socket):
    sock = tcp_socket()
    sock.close()
    with pytest.raises(pggssenc.ParameterError) as raised:
        pggssenc.wrap_socket(sock, host="localhost")
    assert raised.value.code == Result.INVALID_PARAMETER


def test_closed_socket_message_names_descriptor(tcp_socket):
    sock = tcp_socket()
    sock.close()
    with pytest.raises(pggssenc.ParameterError) as raised:
        pggssenc.wrap_socket(sock, host="localhost")
    assert raised.value.message == "invalid file descriptor -1"


def test_use_after_close_raises_ebadf(gss_socket):
    gss_socket.close()
    with pytest.raises(OSError) as raised:
        gss_socket.recv(1)
    assert raised.value.errno == errno.EBADF
    with pytest.raises(OSError) as raised:
        gss_socket.sendall(b"x")
    assert raised.value.errno == errno.EBADF


def test_unknown_krbsrvname_is_gss_failure(tcp_socket):
    with pytest.raises(pggssenc.GssFailureError) as raised:
        pggssenc.wrap_socket(tcp_socket(), host="localhost", krbsrvname="nosuchservice")
    assert raised.value.code == Result.GSS_FAILURE
    assert raised.value.message.startswith("GSSAPI gss_init_sec_context failed: ")
    assert "Server nosuchservice/localhost@PGGSS.TEST not found in Kerberos database" in raised.value.message


def test_krbsrvname_without_server_key(tcp_socket):
    """other/localhost exists in the KDC but not in the server's keytab: the server hangs up mid-handshake."""
    with pytest.raises(pggssenc.ProtocolError) as raised:
        pggssenc.wrap_socket(tcp_socket(), host="localhost", krbsrvname="other")
    assert raised.value.code == Result.UNEXPECTED_EOF
    assert raised.value.message == (
        "server closed the connection unexpectedly while waiting for a GSSAPI handshake token"
    )


def test_require_over_unix_socket_declined(unix_socket):
    with pytest.raises(pggssenc.ServerDeclinedError) as raised:
        pggssenc.wrap_socket(unix_socket(), host="localhost", gssencmode="require")
    assert raised.value.code == Result.SERVER_DECLINED
    assert raised.value.message == (
        "server does not support GSSAPI encryption: it declined GSSENCRequest ('N'), and gssencmode is \"require\""
    )


def test_require_without_credentials(tcp_socket):
    with pytest.raises(pggssenc.NoCredentialsError) as raised:
        pggssenc.wrap_socket(tcp_socket(), host="localhost", ccache="FILE:/nonexistent/ccache")
    assert raised.value.code == Result.NO_CREDENTIALS
    assert raised.value.message.startswith('gssencmode is "require", but there are no usable Kerberos credentials: ')


def test_disable_sends_nothing(tcp_socket):
    gss = pggssenc.wrap_socket(tcp_socket(), host="localhost", gssencmode="disable")
    assert gss.outcome == pggssenc.Outcome.DISABLED
    assert gss.encrypted is False
    assert gss.negotiation_message == 'gssencmode is "disable"; GSSENCRequest was not sent'
    gss.close()


def start_fake_server(reply):
    """Start a server that reads the 8-byte GSSENCRequest, sends reply and hangs up.

    Returns the server's address and a list that receives the request bytes.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    received = []

    def serve():
        with listener:
            listener.settimeout(10)
            client, _ = listener.accept()
            with client:
                received.append(client.recv(8))
                client.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname(), received


@pytest.mark.parametrize(
    ("reply", "error_class", "code", "message_start"),
    [
        (b"", pggssenc.ProtocolError, Result.UNEXPECTED_EOF,
         "server closed the connection unexpectedly while waiting for the response to GSSENCRequest"),
        (b"X", pggssenc.ProtocolError, Result.UNEXPECTED_RESPONSE,
         "received invalid response to GSSENCRequest: byte 0x58 ('X')"),
        (b"E\0\0\0\x08oops", pggssenc.ServerErrorResponseError, Result.SERVER_ERROR_RESPONSE,
         "server answered GSSENCRequest with an error response"),
        (b"G", pggssenc.ProtocolError, Result.UNEXPECTED_EOF,
         "server closed the connection unexpectedly while waiting for a GSSAPI handshake token"),
    ],
    ids=["eof", "invalid-byte", "error-response", "eof-after-G"],
)
def test_fake_server_responses(fixture_env, reply, error_class, code, message_start):
    address, received = start_fake_server(reply)
    with pytest.raises(error_class) as raised:
        pggssenc.wrap_socket(socket.create_connection(address, timeout=10), host="localhost")
    assert raised.value.code == code
    assert raised.value.message.startswith(message_start)
    # GSSENCRequest: length 8, code 80877104.
    assert received == [b"\x00\x00\x00\x08\x04\xd2\x16\x30"]


def test_datagram_socket_rejected():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(ValueError, match="SOCK_STREAM"):
            pggssenc.GSSSocket(sock, host="localhost")


def test_recv_flags_rejected(gss_socket):
    with pytest.raises(ValueError, match="non-zero flags"):
        gss_socket.recv(1, socket.MSG_PEEK)


def test_recv_before_negotiation_is_state_error(tcp_socket):
    gss = pggssenc.GSSSocket(tcp_socket(), host="localhost")
    with pytest.raises(pggssenc.StateError) as raised:
        gss.recv(1)
    assert raised.value.code == Result.INVALID_STATE
    assert raised.value.message == "negotiation has not finished: call the poll function until it returns OK"
    gss.close()
