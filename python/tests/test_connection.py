"""The low-level Connection: callback and buffer transports, and the acceptor role in one process."""

import socket
import struct

import pytest

import pggssenc
from pggssenc import Connection, Outcome, PollingStatus, Result, StartupKind
from conftest import startup_message

AUTHENTICATION_OK = b"R" + struct.pack("!II", 8, 0)
MAX_ROUNDS = 20


def read_blocking(conn, count):
    """Read exactly count bytes from a connection whose transport blocks."""
    data = b""
    while len(data) < count:
        chunk = conn.read(count - len(data))
        assert chunk, "end of stream"
        data += chunk
    return data


def test_callback_transport_with_postgres(tcp_socket):
    sock = tcp_socket()
    with Connection.client() as conn:
        conn.set_param("host", "localhost")
        conn.set_param("gssencmode", "require")
        conn.set_callbacks(sock.recv_into, sock.send)
        # The callbacks block, so one poll runs the whole negotiation.
        assert conn.connect_poll() == PollingStatus.OK
        assert conn.outcome == Outcome.ENCRYPTED
        assert conn.client_principal == "tester@PGGSS.TEST"
        assert conn.write(startup_message()) == len(startup_message())
        assert read_blocking(conn, 9) == AUTHENTICATION_OK


def test_callback_timeout_keeps_connection_pending(fixture_env):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        sock = socket.create_connection(listener.getsockname(), timeout=0.2)
        with sock, Connection.client() as conn:
            conn.set_param("host", "localhost")
            conn.set_callbacks(sock.recv_into, sock.send)
            with pytest.raises(TimeoutError):
                conn.connect_poll()
            assert conn.outcome == Outcome.PENDING


def test_callback_exception_fails_connection(fixture_env):
    def broken_recv_into(buffer):
        raise RuntimeError("callback broke")

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        sock = socket.create_connection(listener.getsockname(), timeout=5)
        with sock, Connection.client() as conn:
            conn.set_param("host", "localhost")
            conn.set_callbacks(broken_recv_into, sock.send)
            with pytest.raises(pggssenc.TransportError) as raised:
                conn.connect_poll()
            assert raised.value.code == Result.IO
            assert isinstance(raised.value.__cause__, RuntimeError)
            assert conn.outcome == Outcome.FAILED


def make_pair(fixture_env, client_params, decline=False):
    client = Connection.client()
    client.set_param("host", "localhost")
    for key, value in client_params.items():
        client.set_param(key, value)
    client.use_buffers()
    server = Connection.acceptor()
    server.set_keytab(fixture_env["PGGSS_SERVER_KEYTAB"])
    server.set_service("postgres@localhost")
    server.set_decline(decline)
    server.use_buffers()
    return client, server


def shuttle(client, server):
    """Poll both sides and move bytes between them until the client's negotiation ends."""
    for _ in range(MAX_ROUNDS):
        status = client.connect_poll()
        server.feed(client.take_output())
        if status == PollingStatus.OK:
            return
        server.accept_poll()
        client.feed(server.take_output())
    pytest.fail(f"negotiation did not end within {MAX_ROUNDS} rounds")


def test_buffers_client_and_acceptor_encrypt(fixture_env):
    client, server = make_pair(fixture_env, {"gssencmode": "require", "gssdelegation": "1"})
    with client, server:
        shuttle(client, server)
        assert server.accept_poll() == PollingStatus.OK
        assert client.outcome == Outcome.ENCRYPTED
        assert server.outcome == Outcome.ENCRYPTED
        assert server.client_principal == "tester@PGGSS.TEST"
        assert server.client_user == "tester"
        assert server.credentials_delegated is True
        server.store_delegated_credentials("MEMORY:pggssenc-python-test")
        assert client.gss_context is not None

        message = startup_message()
        assert client.write(message) == len(message)
        wire = client.take_output()
        assert client.output_pending() == 0
        # The length word of the packet, then ciphertext that hides the message.
        assert struct.unpack("!I", wire[:4])[0] == len(wire) - 4
        assert message not in wire

        assert server.wanted() == 4
        server.feed(wire[:10])
        assert server.read(1000) is None
        assert server.wanted() == len(wire) - 10
        server.feed(wire[10:])
        assert server.read(1000) == message

        client.feed(b"")
        client.feed_eof()
        assert client.read(10) == b""


def test_buffers_acceptor_declines(fixture_env):
    client, server = make_pair(fixture_env, {"gssencmode": "prefer"}, decline=True)
    with client, server:
        shuttle(client, server)
        assert client.outcome == Outcome.SERVER_DECLINED
        assert client.encrypted is False

        message = startup_message()
        assert client.write(message) == len(message)
        server.feed(client.take_output())
        assert server.accept_poll() == PollingStatus.OK
        assert server.outcome == Outcome.DECLINED
        assert server.startup_packet() == (StartupKind.STARTUP_MESSAGE, message, len(message))


def test_buffers_acceptor_not_requested(fixture_env):
    client, server = make_pair(fixture_env, {"gssencmode": "disable"})
    with client, server:
        assert client.connect_poll() == PollingStatus.OK
        assert client.outcome == Outcome.DISABLED
        assert client.take_output() == b""
        message = startup_message()
        client.write(message)
        server.feed(client.take_output())
        assert server.accept_poll() == PollingStatus.OK
        assert server.outcome == Outcome.NOT_REQUESTED
        kind, data, length = server.startup_packet()
        assert (kind, data, length) == (StartupKind.STARTUP_MESSAGE, message, len(message))
        assert server.client_user is None


def test_feed_requires_buffer_transport(fixture_env):
    with Connection.client() as conn:
        with pytest.raises(pggssenc.StateError) as raised:
            conn.feed(b"x")
        assert raised.value.code == Result.INVALID_STATE


def test_freed_connection_refuses_calls(fixture_env):
    conn = Connection.client()
    conn.free()
    conn.free()
    with pytest.raises(pggssenc.StateError, match="was freed"):
        conn.set_param("host", "localhost")


def test_unknown_parameter_name(fixture_env):
    with Connection.client() as conn:
        with pytest.raises(pggssenc.ParameterError) as raised:
            conn.set_param("sslmode", "disable")
        assert raised.value.message == (
            'unknown parameter "sslmode"; pggssenc uses host, krbsrvname, gssencmode, gssdelegation and ccache'
        )


def test_zero_bytearray_overwrites_in_place():
    from pggssenc.connection import zero_bytearray

    buffer = bytearray(b"plaintext row")
    alias = memoryview(buffer)
    zero_bytearray(buffer)
    assert buffer == bytearray(13)
    assert alias.tobytes() == bytes(13)
    alias.release()
    empty = bytearray()
    zero_bytearray(empty)
    assert empty == bytearray()
