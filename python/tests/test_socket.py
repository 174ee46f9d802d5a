"""GSSSocket as a socket: timeouts, non-blocking mode, buffered plaintext, makefile, closing."""

import errno
import hashlib
import select
import socket
import struct
import threading
import time

import pytest

import pggssenc
from conftest import (
    recv_exact,
    recv_message,
    recv_until_ready,
    server_read,
    server_write_all,
    startup_message,
)

TIMEOUT = 0.3


def start_silent_listener():
    """Return a listening socket that never accepts, so connections complete but no byte ever comes back."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    return listener


def test_negotiation_timeout_on_silent_server():
    with start_silent_listener() as listener:
        sock = socket.create_connection(listener.getsockname(), timeout=TIMEOUT)
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="^timed out$"):
            pggssenc.wrap_socket(sock, host="localhost")
        elapsed = time.monotonic() - started
    assert TIMEOUT <= elapsed < TIMEOUT + 1.0
    assert sock.fileno() == -1


def test_negotiation_non_blocking_with_connect_poll():
    with start_silent_listener() as listener:
        sock = socket.create_connection(listener.getsockname(), timeout=5)
        sock.setblocking(False)
        gss = pggssenc.wrap_socket(sock, host="localhost", do_handshake_on_connect=False)
        assert gss.outcome == pggssenc.Outcome.PENDING
        # GSSENCRequest goes out, then the response byte is awaited.
        assert gss.connect_poll() == pggssenc.PollingStatus.READING
        with pytest.raises(BlockingIOError):
            gss.negotiate()
        gss.close()


def test_recv_timeout_then_socket_still_usable(gss_socket):
    gss_socket.settimeout(TIMEOUT)
    assert gss_socket.gettimeout() == TIMEOUT
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="^timed out$"):
        gss_socket.recv(1)
    elapsed = time.monotonic() - started
    assert TIMEOUT <= elapsed < TIMEOUT + 1.0

    gss_socket.settimeout(10)
    gss_socket.sendall(startup_message())
    messages = recv_until_ready(gss_socket)
    assert messages[0] == (b"R", struct.pack("!I", 0))
    assert messages[-1] == (b"Z", b"I")


def test_non_blocking_recv_raises_blocking_io_error(gss_socket):
    gss_socket.setblocking(False)
    assert gss_socket.getblocking() is False
    assert gss_socket.gettimeout() == 0.0
    with pytest.raises(BlockingIOError) as raised:
        gss_socket.recv(1)
    assert raised.value.errno == errno.EAGAIN


def test_buffered_plaintext_served_without_socket_data(gss_socket):
    gss_socket.sendall(startup_message())
    kind, body = recv_message(gss_socket)
    assert (kind, body) == (b"R", struct.pack("!I", 0))
    # Wait until ReadyForQuery has surely arrived, then read the rest in
    # non-blocking mode: everything comes from pggssenc's buffers or the
    # socket without a single BlockingIOError.
    time.sleep(0.2)
    gss_socket.setblocking(False)
    messages = recv_until_ready(gss_socket)
    assert messages[-1] == (b"Z", b"I")
    assert gss_socket.pending() == 0
    with pytest.raises(BlockingIOError):
        gss_socket.recv(1)


def test_recv_into_with_nbytes(gss_socket):
    gss_socket.sendall(startup_message())
    buffer = bytearray(16)
    assert gss_socket.recv_into(buffer, 5) == 5
    assert bytes(buffer[:5]) == b"R\x00\x00\x00\x08"
    assert bytes(buffer[5:]) == bytes(11)
    with pytest.raises(ValueError, match="buffer too small"):
        gss_socket.recv_into(buffer, 17)


def test_makefile_rwb_round_trip(gss_socket):
    stream = gss_socket.makefile(mode="rwb")
    assert isinstance(stream, __import__("io").BufferedRWPair)
    stream.write(startup_message())
    stream.flush()
    assert stream.read(9) == b"R\x00\x00\x00\x08\x00\x00\x00\x00"
    stream.close()


def test_makefile_rb_and_wb(gss_socket):
    reader = gss_socket.makefile("rb")
    writer = gss_socket.makefile("wb")
    assert reader.readable() is True
    assert reader.writable() is False
    assert writer.writable() is True
    assert writer.readable() is False
    writer.write(startup_message())
    writer.flush()
    assert reader.read(5) == b"R\x00\x00\x00\x08"
    assert reader.fileno() == gss_socket.fileno()
    reader.close()
    writer.close()


def test_makefile_keeps_connection_after_close(gss_socket):
    stream = gss_socket.makefile("rwb")
    gss_socket.close()
    assert gss_socket.closed is True
    # As with socket.socket, the open file keeps the stream alive.
    stream.write(startup_message())
    stream.flush()
    assert stream.read(5) == b"R\x00\x00\x00\x08"
    stream.close()
    with pytest.raises(OSError) as raised:
        gss_socket.recv(1)
    assert raised.value.errno == errno.EBADF


def test_makefile_read_after_timeout_refused(gss_socket):
    gss_socket.settimeout(TIMEOUT)
    reader = gss_socket.makefile("rb")
    with pytest.raises(TimeoutError):
        reader.read(1)
    with pytest.raises(OSError, match="cannot read from timed out object"):
        reader.read(1)
    reader.close()


def test_socket_attributes_delegate(tcp_socket, pg_port):
    sock = tcp_socket()
    local = sock.getsockname()
    with pggssenc.wrap_socket(sock, host="localhost") as gss:
        assert gss.getpeername() == ("127.0.0.1", pg_port)
        assert gss.getsockname() == local
        assert gss.family == socket.AF_INET
        assert gss.type == socket.SOCK_STREAM
        assert gss.fileno() == sock.fileno()
        gss.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        assert gss.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert gss.max_plaintext > 0
        assert "outcome=ENCRYPTED encrypted=True" in repr(gss)
    assert sock.fileno() == -1
    assert repr(gss) == "<pggssenc.GSSSocket [closed]>"
    gss.close()


def test_shutdown_write_ends_session(gss_socket):
    gss_socket.sendall(startup_message())
    recv_until_ready(gss_socket)
    gss_socket.shutdown(socket.SHUT_WR)
    # The server reads end of stream, ends the backend and closes its side.
    assert gss_socket.recv(1) == b""


def test_settimeout_rejects_negative(gss_socket):
    with pytest.raises(ValueError, match="Timeout value out of range"):
        gss_socket.settimeout(-1)


SEND_PAYLOAD_SIZE = 8 * 1024 * 1024
SMALL_BUFFER = 32 * 1024


def test_send_timeout_and_retry_contract(acceptor_server):
    """A timed-out send keeps its bytes. Different bytes raise StateError, and the same bytes complete the stream."""
    payload = bytes(range(256)) * (SEND_PAYLOAD_SIZE // 256)
    resume = threading.Event()
    received_digest = []

    def handler(conn, sock):
        assert resume.wait(10), "test did not resume the server"
        digest = hashlib.sha256()
        total = 0
        while True:
            data = server_read(conn, sock, 65536)
            if not data:
                break
            digest.update(data)
            total += len(data)
        received_digest.append((total, digest.hexdigest()))
        server_write_all(conn, sock, b"done")

    server = acceptor_server(handler, receive_buffer=SMALL_BUFFER)
    sock = socket.create_connection(server.address, timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    gss = pggssenc.wrap_socket(sock, host="localhost")
    assert gss.encrypted

    gss.settimeout(TIMEOUT)
    view = memoryview(payload)
    sent = 0
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        while sent < len(payload):
            sent += gss.send(view[sent:])
    assert time.monotonic() - started >= TIMEOUT
    assert 0 < sent < len(payload)

    with pytest.raises(pggssenc.StateError) as raised:
        gss.send(b"\xff" * 100)
    assert "differ from the" in raised.value.message

    resume.set()
    gss.settimeout(20)
    gss.sendall(view[sent:])
    gss.shutdown(socket.SHUT_WR)
    assert recv_exact(gss, 4) == b"done"
    server.join()
    assert received_digest == [(len(payload), hashlib.sha256(payload).hexdigest())]
    assert server.outcome == pggssenc.Outcome.ENCRYPTED
    gss.close()


def test_sendall_timeout_bounds_whole_call(acceptor_server):
    hold = threading.Event()

    def handler(conn, sock):
        hold.wait(10)

    server = acceptor_server(handler, receive_buffer=SMALL_BUFFER)
    sock = socket.create_connection(server.address, timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    gss = pggssenc.wrap_socket(sock, host="localhost")
    gss.settimeout(TIMEOUT)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        gss.sendall(bytes(SEND_PAYLOAD_SIZE))
    elapsed = time.monotonic() - started
    hold.set()
    server.join()
    gss.close()
    assert TIMEOUT <= elapsed < TIMEOUT + 1.0


def test_non_blocking_send_raises_blocking_io_error(acceptor_server):
    hold = threading.Event()

    def handler(conn, sock):
        hold.wait(10)

    server = acceptor_server(handler, receive_buffer=SMALL_BUFFER)
    sock = socket.create_connection(server.address, timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    gss = pggssenc.wrap_socket(sock, host="localhost")
    gss.setblocking(False)
    chunk = bytes(65536)
    sent = 0
    with pytest.raises(BlockingIOError):
        for _ in range(1000):
            sent += gss.send(chunk)
    assert sent < 1000 * len(chunk)
    hold.set()
    server.join()
    gss.close()


def two_packets_server(first, second):
    """Build a handler that sends two packets back to back, then waits for the client to hang up."""

    def handler(conn, sock):
        server_write_all(conn, sock, first)
        server_write_all(conn, sock, second)
        assert server_read(conn, sock, 1) == b""

    return handler


def test_recv_returns_packet_buffered_by_earlier_read(acceptor_server):
    """Both packets arrive in one recv(2); the second one is served even though the socket has no more data."""
    server = acceptor_server(two_packets_server(b"a" * 100, b"b" * 100))
    gss = pggssenc.wrap_socket(socket.create_connection(server.address, timeout=5), host="localhost")
    time.sleep(0.2)
    assert gss.recv(100) == b"a" * 100
    gss.setblocking(False)
    assert gss.recv(100) == b"b" * 100
    gss.close()
    server.join()


def test_pending_counts_received_packets(acceptor_server):
    """The second packet arrived with the first: pending() reports its wrapped bytes, which exceed its plaintext."""
    server = acceptor_server(two_packets_server(b"a" * 100, b"b" * 100))
    gss = pggssenc.wrap_socket(socket.create_connection(server.address, timeout=5), host="localhost")
    try:
        time.sleep(0.2)
        assert gss.recv(100) == b"a" * 100
        readable, _, _ = select.select([gss], [], [], 0)
        assert readable == []
        assert gss.pending() > 100
        gss.setblocking(False)
        assert gss.recv(100) == b"b" * 100
        assert gss.pending() == 0
    finally:
        gss.close()
        server.join()


def test_concurrent_reader_and_writer_threads(acceptor_server):
    """One thread sends while another receives the echo: library calls are serialised, waits are not."""
    payload = bytes(range(251)) * 8192

    def echo(conn, sock):
        while True:
            data = server_read(conn, sock, 65536)
            if not data:
                return
            server_write_all(conn, sock, data)

    server = acceptor_server(echo)
    gss = pggssenc.wrap_socket(socket.create_connection(server.address, timeout=20), host="localhost")
    received = bytearray()

    def receive():
        while len(received) < len(payload):
            chunk = gss.recv(65536)
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=receive)
    reader.start()
    gss.sendall(payload)
    reader.join(30)
    assert not reader.is_alive()
    gss.shutdown(socket.SHUT_WR)
    assert gss.recv(1) == b""
    server.join()
    gss.close()
    assert len(received) == len(payload)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


@pytest.mark.parametrize(("gssdelegation", "expected"), [(True, True), (False, False), ("1", True)])
def test_gssdelegation_values(tcp_socket, gssdelegation, expected):
    with pggssenc.wrap_socket(tcp_socket(), host="localhost", gssdelegation=gssdelegation) as gss:
        assert gss.connection.credentials_delegated is expected
