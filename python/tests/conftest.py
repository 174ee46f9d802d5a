"""Shared fixtures: the pgkrb fixture's environment, sockets, and a pggssenc acceptor server.

Tests that need the KDC and PostgreSQL run inside tests/fixture/pgkrb (see
python/run-tests). Outside it, the `fixture_env` fixture fails with a
message that explains how to run them.
"""

import os
import select
import socket
import struct
import sys
import threading
import time

import pytest

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)

import pggssenc  # noqa: E402  (needs the sys.path entry above)

FIXTURE_VARIABLES = ("PGPORT", "PGGSS_SOCKDIR", "PGGSS_SERVER_KEYTAB", "PGGSS_PRINCIPAL", "KRB5CCNAME")
# Seconds allowed for any single network step of a test before it fails.
STEP_TIMEOUT = 10.0


@pytest.fixture(scope="session")
def fixture_env():
    missing = [name for name in FIXTURE_VARIABLES if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"environment variables {', '.join(missing)} are missing: run these tests through python/run-tests, "
            f"which starts them inside tests/fixture/pgkrb run",
            pytrace=False,
        )
    return os.environ


@pytest.fixture
def pg_port(fixture_env):
    return int(fixture_env["PGPORT"])


@pytest.fixture
def unix_socket_path(fixture_env, pg_port):
    return os.path.join(fixture_env["PGGSS_SOCKDIR"], f".s.PGSQL.{pg_port}")


@pytest.fixture
def tcp_socket(pg_port):
    """Factory of TCP sockets connected to the fixture's PostgreSQL; all are closed after the test."""
    opened = []

    def connect(timeout=STEP_TIMEOUT):
        sock = socket.create_connection(("127.0.0.1", pg_port), timeout=timeout)
        opened.append(sock)
        return sock

    yield connect
    for sock in opened:
        sock.close()


@pytest.fixture
def unix_socket(unix_socket_path):
    """Factory of Unix-domain sockets connected to the fixture's PostgreSQL."""
    opened = []

    def connect(timeout=STEP_TIMEOUT):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        opened.append(sock)
        sock.settimeout(timeout)
        sock.connect(unix_socket_path)
        return sock

    yield connect
    for sock in opened:
        sock.close()


@pytest.fixture
def gss_socket(tcp_socket):
    """A GSSSocket to the fixture's PostgreSQL with gssencmode=require, negotiated, timeout STEP_TIMEOUT."""
    gss = pggssenc.wrap_socket(tcp_socket(), host="localhost", gssencmode="require")
    yield gss
    gss.close()


def startup_message(user="tester", database="tester"):
    """Return a protocol 3.0 StartupMessage."""
    body = struct.pack("!I", 196608)
    for key, value in (("user", user), ("database", database)):
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def recv_exact(sock, count):
    """Receive exactly count bytes from a socket-like object, or fail on EOF."""
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, f"connection closed after {len(data)} of {count} bytes"
        data += chunk
    return bytes(data)


def recv_message(sock):
    """Receive one backend message; return (type byte, body)."""
    header = recv_exact(sock, 5)
    kind, length = struct.unpack("!cI", header)
    return kind, recv_exact(sock, length - 4)


def recv_until_ready(sock):
    """Receive backend messages up to ReadyForQuery; return them as a list of (type, body)."""
    messages = []
    while True:
        message = recv_message(sock)
        messages.append(message)
        if message[0] == b"Z":
            return messages


def _wait_fd(fd, events, deadline):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("acceptor server step timed out")
    poller = select.poll()
    poller.register(fd, events)
    poller.poll(max(1, int(remaining * 1000)))


def server_accept(conn, sock, timeout=STEP_TIMEOUT):
    """Drive an acceptor Connection on a non-blocking socket until negotiation ends; return the Outcome."""
    deadline = time.monotonic() + timeout
    while True:
        status = conn.accept_poll()
        if status == pggssenc.PollingStatus.OK:
            return conn.outcome
        events = select.POLLIN if status == pggssenc.PollingStatus.READING else select.POLLOUT
        _wait_fd(sock.fileno(), events, deadline)


def server_read(conn, sock, count, timeout=STEP_TIMEOUT):
    """Read up to count plaintext bytes on the acceptor side; b"" at end of stream."""
    deadline = time.monotonic() + timeout
    while True:
        data = conn.read(count)
        if data is not None:
            return data
        _wait_fd(sock.fileno(), select.POLLIN, deadline)


def server_write_all(conn, sock, data, timeout=STEP_TIMEOUT):
    """Write all of data on the acceptor side, keeping the retry contract."""
    deadline = time.monotonic() + timeout
    view = memoryview(data)
    while view:
        count = conn.write(view)
        if count is None:
            _wait_fd(sock.fileno(), select.POLLOUT, deadline)
            continue
        view = view[count:]


class AcceptorServer:
    """A loopback TCP server that accepts one client with pggssenc's acceptor role.

    handler(conn, sock) runs in a thread after negotiation, with the
    acceptor Connection and the accepted non-blocking socket. join()
    re-raises the handler's exception in the test's thread.
    """

    def __init__(self, handler, keytab, receive_buffer=None, decline=False):
        self.handler = handler
        self.keytab = keytab
        self.decline = decline
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            # Set before listen() so that the accepted socket inherits it.
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.address = self.listener.getsockname()
        self.outcome = None
        self.error = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            self.listener.settimeout(STEP_TIMEOUT)
            sock, _ = self.listener.accept()
            with sock, pggssenc.Connection.acceptor() as conn:
                sock.setblocking(False)
                conn.set_keytab(self.keytab)
                conn.set_service("postgres@localhost")
                conn.set_decline(self.decline)
                conn.set_fd(sock.fileno())
                self.outcome = server_accept(conn, sock)
                self.handler(conn, sock)
        except BaseException as error:  # noqa: BLE001 - reported by join()
            self.error = error
        finally:
            self.listener.close()

    def join(self, timeout=STEP_TIMEOUT):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "acceptor server thread did not finish"
        if self.error is not None:
            raise self.error


@pytest.fixture
def acceptor_server(fixture_env):
    """Factory of AcceptorServer instances using the fixture's server keytab."""
    servers = []

    def start(handler, **options):
        server = AcceptorServer(handler, fixture_env["PGGSS_SERVER_KEYTAB"], **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.thread.join(STEP_TIMEOUT)
