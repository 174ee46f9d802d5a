"""GSSSocket: a connected socket whose traffic pggssenc encrypts.

Transport choice: the library gets the socket's descriptor (pggss_conn_set_fd)
and calls recv(2) and send(2) itself, so no Python code runs per system
call. The descriptor is switched to non-blocking mode for good, and every
wait happens here, in poll(2), with the timeout of the Python socket API:
None blocks, 0.0 raises BlockingIOError, a positive number raises
TimeoutError ("timed out") when the deadline passes. Before waiting for
readability, GSSSocket checks pggss_conn_pending for decrypted bytes that
are already buffered. The callback transport would give the same timeouts,
but it costs a Python call per recv(2) or send(2), and exceptions cannot
cross the C frames.

Timeouts follow the socket module: recv, recv_into and send get the whole
timeout per call, sendall and negotiate get it as a deadline for the whole
call.
"""

import errno
import io
import math
import select
import socket
import time

from .connection import Connection, zero_bytearray
from .errors import PollingStatus, Result, StateError

# Largest slice offered to one pggss_conn_write call. It equals the library's
# MAX_QUEUED_OUTPUT, so that a copy kept for the retry check stays small.
SEND_CHUNK_SIZE = 256 * 1024


class GSSSocket:
    """A connected stream socket with pggssenc's GSSAPI encryption on top.

    The GSSSocket owns ``sock``: close() frees the pggssenc handle and closes
    ``sock``. The initial timeout is ``sock.gettimeout()``. Calls on one
    GSSSocket may come from two threads (one reading, one writing), because
    each library call is serialised. Code that waits on fileno() with select
    or poll must call pending() first, because decrypted bytes may already be
    buffered.

    After a send or sendall that raised TimeoutError or BlockingIOError, or a
    send that returned fewer bytes than offered, the library has encrypted
    part of the unreported bytes already. The next send must offer those
    bytes again from the same start, and a send of different bytes raises
    StateError instead of corrupting the stream.
    """

    def __init__(self, sock, *, host=None, conninfo=None, gssencmode=None, krbsrvname=None, gssdelegation=None, ccache=None):
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"GSSSocket needs a SOCK_STREAM socket, not {sock.type!r}")
        self._sock = sock
        self._timeout = sock.gettimeout()
        self._io_refs = 0
        self._closed = False
        # Bytes of the last write that the library did not report as
        # written. The next write must start with them.
        self._unreported = None
        self._conn = Connection.client()
        try:
            if conninfo is not None:
                self._conn.set_conninfo(conninfo)
            explicit = {
                "host": host,
                "gssencmode": gssencmode,
                "krbsrvname": krbsrvname,
                "gssdelegation": _delegation_value(gssdelegation),
                "ccache": ccache,
            }
            for key, value in explicit.items():
                if value is not None:
                    self._conn.set_param(key, value)
            # A closed socket has fileno() -1, which the library rejects
            # with PGGSS_RESULT_INVALID_PARAMETER.
            self._conn.set_fd(sock.fileno())
            sock.setblocking(False)
        except BaseException:
            self._conn.free()
            raise

    # Negotiation.

    def connect_poll(self):
        """Advance negotiation without waiting, and return PollingStatus READING, WRITING or OK.

        For callers that run their own event loop on fileno(). Raises a
        PgGssError subclass when negotiation fails.
        """
        return self._live_connection().connect_poll()

    def negotiate(self):
        """Run negotiation to its end within the socket timeout, and return the Outcome.

        Under gssencmode=prefer, a declining server and missing credentials
        end in SERVER_DECLINED or NO_CREDENTIALS with the socket in
        plaintext. Under "require" they raise ServerDeclinedError or
        NoCredentialsError. In non-blocking mode (timeout 0.0) it raises
        BlockingIOError when it must wait: use connect_poll() there.
        """
        connection = self._live_connection()
        deadline = self._deadline()
        while True:
            status = connection.connect_poll()
            if status == PollingStatus.OK:
                return connection.outcome
            if self._timeout == 0.0:
                raise BlockingIOError(
                    errno.EAGAIN, "negotiation must wait for the socket; in non-blocking mode call connect_poll()"
                )
            events = select.POLLIN if status == PollingStatus.READING else select.POLLOUT
            self._wait(events, deadline)

    @property
    def outcome(self):
        return self._live_connection().outcome

    @property
    def encrypted(self):
        """True when the connection is GSSAPI-encrypted, False before negotiation and after a fallback."""
        return self._live_connection().encrypted

    @property
    def negotiation_message(self):
        """The reason for a fallback to plaintext under gssencmode=prefer, or the last error message."""
        return self._live_connection().error_message

    @property
    def client_principal(self):
        """The Kerberos principal the connection authenticated as, or None when not encrypted."""
        return self._live_connection().client_principal

    @property
    def max_plaintext(self):
        return self._live_connection().max_plaintext

    @property
    def connection(self):
        """The underlying pggssenc Connection."""
        return self._live_connection()

    def pending(self):
        """Return the number of decrypted bytes that recv returns without reading the socket."""
        return self._live_connection().pending()

    # Receiving.

    def recv_into(self, buffer, nbytes=0, flags=0):
        """Receive up to nbytes (default: len(buffer)) plaintext bytes into buffer, and return the count (0 at EOF)."""
        _check_flags(flags, "recv_into")
        view = memoryview(buffer).cast("B")
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        if nbytes:
            if nbytes > len(view):
                raise ValueError("buffer too small for requested bytes")
            view = view[:nbytes]
        connection = self._live_connection()
        deadline = self._deadline()
        while True:
            count = connection.read_into(view)
            if count is not None:
                return count
            if connection.pending() > 0:
                continue
            if self._timeout == 0.0:
                raise BlockingIOError(errno.EAGAIN, "no complete packet is available yet")
            self._wait(select.POLLIN, deadline)

    def recv(self, bufsize, flags=0):
        """Receive up to bufsize plaintext bytes. Returns b"" when the server closed the connection."""
        _check_flags(flags, "recv")
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        buffer = bytearray(bufsize)
        try:
            count = self.recv_into(buffer)
            return bytes(memoryview(buffer)[:count])
        finally:
            zero_bytearray(buffer)

    # Sending.

    def _write(self, chunk):
        """Offer chunk to the library once under the retry contract. Returns the count, or None for EAGAIN."""
        if self._unreported is not None:
            common = min(len(chunk), len(self._unreported))
            if chunk[:common] != self._unreported[:common]:
                raise StateError(
                    Result.INVALID_STATE,
                    f"send offered bytes that differ from the {len(self._unreported)} unreported bytes of the "
                    f"previous send, which timed out, would block or was partial; pggssenc has already "
                    f"encrypted part of them, so offer them again first",
                )
        count = self._live_connection().write(chunk)
        if count is None:
            self._unreported = bytes(chunk)
        elif count < len(chunk):
            self._unreported = bytes(chunk[count:])
        else:
            self._unreported = None
        return count

    def send(self, data, flags=0):
        """Send plaintext, and return the number of bytes sent, which may be fewer than len(data)."""
        _check_flags(flags, "send")
        view = memoryview(data).cast("B")
        if not view:
            return 0
        chunk = view[:SEND_CHUNK_SIZE]
        deadline = self._deadline()
        while True:
            count = self._write(chunk)
            if count is not None:
                return count
            if self._timeout == 0.0:
                raise BlockingIOError(errno.EAGAIN, "the socket's send buffer is full")
            self._wait(select.POLLOUT, deadline)

    def sendall(self, data, flags=0):
        """Send all of data. The timeout bounds the whole call."""
        _check_flags(flags, "sendall")
        view = memoryview(data).cast("B")
        deadline = self._deadline()
        offset = 0
        while offset < len(view):
            count = self._write(view[offset : offset + SEND_CHUNK_SIZE])
            if count is not None:
                offset += count
                continue
            if self._timeout == 0.0:
                raise BlockingIOError(errno.EAGAIN, "the socket's send buffer is full")
            self._wait(select.POLLOUT, deadline)

    # Waiting and timeouts.

    def _deadline(self):
        if self._timeout is None or self._timeout == 0.0:
            return None
        return time.monotonic() + self._timeout

    def _wait(self, events, deadline):
        """Wait until the socket is ready for events, or raise TimeoutError when the deadline passes."""
        if deadline is None:
            timeout_ms = None
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out")
            timeout_ms = math.ceil(remaining * 1000)
        poller = select.poll()
        poller.register(self._sock.fileno(), events)
        # POLLERR and POLLHUP also end the wait, and the next library call reports them.
        if not poller.poll(timeout_ms):
            raise socket.timeout("timed out")

    def settimeout(self, value):
        """Set the timeout in seconds: None blocks, 0.0 is non-blocking."""
        if value is not None:
            value = float(value)
            if value < 0.0 or math.isnan(value):
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self):
        return self._timeout

    def setblocking(self, flag):
        self.settimeout(None if flag else 0.0)

    def getblocking(self):
        return self._timeout != 0.0

    # Socket attributes, delegated to the wrapped socket.

    def fileno(self):
        return self._sock.fileno()

    def getpeername(self):
        return self._sock.getpeername()

    def getsockname(self):
        return self._sock.getsockname()

    def getsockopt(self, *args):
        return self._sock.getsockopt(*args)

    def setsockopt(self, *args):
        return self._sock.setsockopt(*args)

    def shutdown(self, how):
        """Shut down one or both directions of the TCP stream. GSSAPI encryption has no close message."""
        self._sock.shutdown(how)

    @property
    def family(self):
        return self._sock.family

    @property
    def type(self):
        return self._sock.type

    @property
    def proto(self):
        return self._sock.proto

    # File objects.

    def makefile(self, mode="r", buffering=None, *, encoding=None, errors=None, newline=None):
        """Return a file object for the stream, as socket.socket.makefile does.

        The file keeps the connection open after close() until the file is
        closed too, as with a plain socket.
        """
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing = "w" in mode
        reading = "r" in mode or not writing
        binary = "b" in mode
        rawmode = ""
        if reading:
            rawmode += "r"
        if writing:
            rawmode += "w"
        raw = GSSSocketIO(self, rawmode)
        self._io_refs += 1
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        if reading and writing:
            buffer = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = io.BufferedReader(raw, buffering)
        else:
            buffer = io.BufferedWriter(raw, buffering)
        if binary:
            return buffer
        text = io.TextIOWrapper(buffer, encoding, errors, newline)
        text.mode = mode
        return text

    def _decref_socketios(self):
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed and self._io_refs <= 0:
            self._real_close()

    # Closing.

    def _live_connection(self):
        if self._conn.freed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return self._conn

    def _real_close(self):
        self._conn.free()
        self._sock.close()

    def close(self):
        """Free the pggssenc handle and close the socket, once no makefile() file is open."""
        if self._closed:
            return
        self._closed = True
        if self._io_refs <= 0:
            self._real_close()

    @property
    def closed(self):
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        if self._conn.freed:
            return "<pggssenc.GSSSocket [closed]>"
        return (
            f"<pggssenc.GSSSocket fd={self.fileno()} outcome={self._conn.outcome.name} "
            f"encrypted={self._conn.encrypted}>"
        )


class GSSSocketIO(io.RawIOBase):
    """Raw I/O over a GSSSocket, the counterpart of socket.SocketIO for makefile()."""

    def __init__(self, gss_socket, mode):
        if mode not in ("r", "w", "rw"):
            raise ValueError(f"invalid mode: {mode!r}")
        super().__init__()
        self._gss_socket = gss_socket
        self._reading = "r" in mode
        self._writing = "w" in mode
        self.mode = mode + "b"
        self._timeout_occurred = False

    def readinto(self, buffer):
        """Read into buffer, and return the count, 0 at EOF, or None when a non-blocking socket has no data."""
        self._checkClosed()
        self._checkReadable()
        # A buffered reader may have dropped bytes that it had collected
        # before the timeout, so the stream position is lost.
        if self._timeout_occurred:
            raise OSError("cannot read from timed out object")
        try:
            return self._gss_socket.recv_into(buffer)
        except TimeoutError:
            self._timeout_occurred = True
            raise
        except BlockingIOError:
            return None

    def write(self, data):
        """Write data, and return the count written, or None when a non-blocking socket is full."""
        self._checkClosed()
        self._checkWritable()
        try:
            return self._gss_socket.send(data)
        except BlockingIOError:
            return None

    def readable(self):
        if self.closed:
            raise ValueError("I/O operation on closed socket.")
        return self._reading

    def writable(self):
        if self.closed:
            raise ValueError("I/O operation on closed socket.")
        return self._writing

    def fileno(self):
        self._checkClosed()
        return self._gss_socket.fileno()

    def close(self):
        if self.closed:
            return
        super().close()
        self._gss_socket._decref_socketios()
        self._gss_socket = None


def wrap_socket(
    sock,
    host=None,
    conninfo=None,
    gssencmode="require",
    krbsrvname=None,
    gssdelegation=None,
    ccache=None,
    do_handshake_on_connect=True,
):
    """Wrap a connected socket in a GSSSocket and, by default, negotiate GSSAPI encryption.

    host is the server's host name for the Kerberos target krbsrvname@host
    (such as "localhost" for postgres/localhost). conninfo is a libpq
    connection string, whose host, krbsrvname, gssencmode and gssdelegation
    are taken. Keyword arguments that are not None override it. The call
    takes ownership of sock: on any error it closes sock, as ssl.wrap_socket
    does when its handshake fails.
    """
    try:
        gss_socket = GSSSocket(
            sock,
            host=host,
            conninfo=conninfo,
            gssencmode=gssencmode,
            krbsrvname=krbsrvname,
            gssdelegation=gssdelegation,
            ccache=ccache,
        )
    except BaseException:
        sock.close()
        raise
    if do_handshake_on_connect:
        try:
            gss_socket.negotiate()
        except BaseException:
            gss_socket.close()
            raise
    return gss_socket


def _delegation_value(value):
    """Map gssdelegation to libpq's "0" or "1". None leaves it unset."""
    if value is None or isinstance(value, str):
        return value
    return "1" if value else "0"


def _check_flags(flags, method):
    if flags != 0:
        raise ValueError(f"non-zero flags not allowed in calls to {method}() on GSSSocket")


__all__ = ["GSSSocket", "GSSSocketIO", "wrap_socket"]
