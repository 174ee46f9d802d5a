"""Connection: one pggss_conn handle, in the client or the acceptor role.

This is the thin layer over the C functions: it converts arguments, turns
failures into PgGssError subclasses with the library's message, and
serialises calls, because the C library forbids overlapping calls on one
connection. GSSSocket builds a socket-like object on it; the asyncio example
drives it through the sans-IO buffer functions.

Read and write methods follow the C contract. None stands for EAGAIN (the
transport would block). After a write returned None or fewer bytes than
offered, the next write must offer the unreported bytes again from the same
start, at least as many as before.
"""

import ctypes
import errno
import threading

from . import _library
from .errors import Outcome, PollingStatus, Result, StartupKind, StateError, error_for

_WOULD_BLOCK_ERRNOS = (errno.EAGAIN, errno.EWOULDBLOCK)
# First buffer size for principals. A longer principal is fetched again with its exact length.
_PRINCIPAL_BUFFER_SIZE = 256


def _input_pointer(data):
    """Return (object accepted as const void *, length) for a bytes-like object, copying only read-only or strided ones."""
    if isinstance(data, bytes):
        return data, len(data)
    view = memoryview(data)
    if view.readonly or not view.c_contiguous:
        copy = view.tobytes()
        return copy, len(copy)
    return (ctypes.c_char * view.nbytes).from_buffer(view), view.nbytes


def zero_bytearray(buffer):
    """Overwrite a bytearray with zeros in place, so that plaintext does not stay in memory Python frees."""
    if buffer:
        ctypes.memset((ctypes.c_char * len(buffer)).from_buffer(buffer), 0, len(buffer))


def _output_pointer(buffer):
    """Return (ctypes array over a writable bytes-like buffer, length) without copying."""
    view = memoryview(buffer)
    if view.readonly:
        raise TypeError("the buffer must be writable, such as a bytearray or a memoryview of one")
    return (ctypes.c_char * view.nbytes).from_buffer(view), view.nbytes


class Connection:
    """Owner of one pggss_conn handle, created by Connection.client() or Connection.acceptor()."""

    def __init__(self, role):
        if role not in ("client", "acceptor"):
            raise ValueError(f"invalid role {role!r}; expected 'client' or 'acceptor'")
        self._lib = _library.lib()
        self.role = role
        self._lock = threading.Lock()
        self._callbacks = None
        self._callback_error = None
        handle = ctypes.c_void_p()
        create = self._lib.pggss_conn_new if role == "client" else self._lib.pggss_acceptor_new
        code = create(ctypes.byref(handle))
        if code != Result.OK or not handle.value:
            raise error_for(code, f"creating a {role} connection failed: {_library.result_text(code)}")
        self._handle = handle.value

    @classmethod
    def client(cls):
        """Create a client connection. PG* variables supply the parameters that are not set."""
        return cls("client")

    @classmethod
    def acceptor(cls):
        """Create an acceptor for one accepted client connection."""
        return cls("acceptor")

    # Lifetime.

    def free(self):
        """Release the handle. The transport (socket or callbacks) is not closed. Idempotent."""
        with self._lock:
            handle, self._handle = self._handle, None
            if handle is not None:
                self._lib.pggss_conn_free(handle)
            self._callbacks = None

    close = free

    @property
    def freed(self):
        return self._handle is None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.free()

    def __del__(self):
        # getattr: __init__ may have failed before _handle existed.
        if getattr(self, "_handle", None) is not None:
            self.free()

    # Errors.

    def _live_handle(self):
        if self._handle is None:
            raise StateError(Result.INVALID_STATE, "the pggssenc connection was freed and cannot be used")
        return self._handle

    def _error(self, code=None, os_errno=None):
        """Build the exception for the last failed call. The caller must hold the lock."""
        if code is None:
            code = self._lib.pggss_conn_last_result(self._handle)
        message = self._lib.pggss_conn_error_message(self._handle).decode("utf-8", "replace")
        if not message:
            message = _library.result_text(code)
        return error_for(code, message, os_errno)

    def _check(self, code):
        if code != Result.OK:
            raise self._error(code)

    def _raise_failure(self, error):
        """Raise a library failure, chained to the callback exception that caused it, if any."""
        cause, self._callback_error = self._callback_error, None
        raise error from cause

    def _raise_callback_error(self):
        """Re-raise an exception that a transport callback stored during the last call."""
        error, self._callback_error = self._callback_error, None
        if error is not None:
            raise error

    # Parameters and transport.

    def set_param(self, key, value):
        """Set one parameter by its libpq name: host, krbsrvname, gssencmode, gssdelegation or ccache."""
        with self._lock:
            handle = self._live_handle()
            self._check(self._lib.pggss_conn_set_param(handle, key.encode(), str(value).encode()))

    def set_conninfo(self, conninfo):
        """Take host, krbsrvname, gssencmode and gssdelegation from a libpq connection string or URI."""
        with self._lock:
            handle = self._live_handle()
            self._check(self._lib.pggss_conn_set_conninfo(handle, conninfo.encode()))

    def set_fd(self, fd):
        """Use a connected socket descriptor that the caller owns and keeps open until free()."""
        with self._lock:
            handle = self._live_handle()
            self._check(self._lib.pggss_conn_set_fd(handle, fd))

    def use_buffers(self):
        """Use the sans-IO buffer transport: feed(), feed_eof(), take_output()."""
        with self._lock:
            handle = self._live_handle()
            self._check(self._lib.pggss_conn_use_buffers(handle))

    def set_callbacks(self, recv_into, send):
        """Use Python functions as the transport.

        ``recv_into(memoryview) -> int`` and ``send(memoryview) -> int`` have
        the semantics of the socket methods of the same names, so a socket's
        bound methods work as they are. BlockingIOError makes the library see
        EAGAIN, meaning that the transport would block. A timeout also does, and the
        TimeoutError is then raised to the caller of the pggssenc call, with
        the connection still usable. Other exceptions are raised to the caller
        as well, and the library sees EIO. The callbacks must not call
        methods of this Connection.
        """

        def run(function, buffer, length, error_out):
            try:
                view = memoryview((ctypes.c_uint8 * length).from_address(ctypes.addressof(buffer.contents)))
                return function(view)
            except BlockingIOError:
                error_out[0] = errno.EAGAIN
            except TimeoutError as error:
                self._callback_error = error
                error_out[0] = errno.EAGAIN
            except OSError as error:
                if error.errno:
                    error_out[0] = error.errno
                else:
                    self._callback_error = error
                    error_out[0] = errno.EIO
            except BaseException as error:  # noqa: BLE001 - an exception must not cross the C frames
                self._callback_error = error
                error_out[0] = errno.EIO
            return -1

        def read_callback(_userdata, buffer, length, error_out):
            return run(recv_into, buffer, length, error_out)

        def write_callback(_userdata, buffer, length, error_out):
            return run(send, buffer, length, error_out)

        callbacks = (_library.READ_CALLBACK(read_callback), _library.WRITE_CALLBACK(write_callback))
        with self._lock:
            handle = self._live_handle()
            self._check(self._lib.pggss_conn_set_callbacks(handle, callbacks[0], callbacks[1], None))
            # The library calls these until free(), so they must stay alive.
            self._callbacks = callbacks

    # Negotiation.

    def _poll(self, function):
        with self._lock:
            handle = self._live_handle()
            status = PollingStatus(function(handle))
            if status == PollingStatus.FAILED:
                self._raise_failure(self._error())
        self._raise_callback_error()
        return status

    def connect_poll(self):
        """Advance client negotiation, and return READING, WRITING or OK. Raises on failure."""
        return self._poll(self._lib.pggss_conn_connect_poll)

    def accept_poll(self):
        """Advance acceptor negotiation, and return READING, WRITING or OK. Raises on failure."""
        return self._poll(self._lib.pggss_conn_accept_poll)

    # Data.

    def read_into(self, buffer):
        """Read plaintext into a writable buffer, and return the count, 0 at end of stream, or None for EAGAIN."""
        target, length = _output_pointer(buffer)
        if length == 0:
            return 0
        with self._lock:
            handle = self._live_handle()
            count = self._lib.pggss_conn_read(handle, target, length)
            if count < 0:
                os_errno = ctypes.get_errno()
                if os_errno not in _WOULD_BLOCK_ERRNOS:
                    self._raise_failure(self._error(os_errno=os_errno))
        self._raise_callback_error()
        return count if count >= 0 else None

    def read(self, max_bytes):
        """Read up to max_bytes of plaintext. Returns bytes (b"" at end of stream), or None for EAGAIN."""
        buffer = bytearray(max_bytes)
        try:
            count = self.read_into(buffer)
            if count is None:
                return None
            return bytes(memoryview(buffer)[:count])
        finally:
            zero_bytearray(buffer)

    def write(self, data):
        """Write plaintext, and return the count of bytes reported as written, or None for EAGAIN."""
        source, length = _input_pointer(data)
        if length == 0:
            return 0
        with self._lock:
            handle = self._live_handle()
            count = self._lib.pggss_conn_write(handle, source, length)
            if count < 0:
                os_errno = ctypes.get_errno()
                if os_errno not in _WOULD_BLOCK_ERRNOS:
                    self._raise_failure(self._error(os_errno=os_errno))
        self._raise_callback_error()
        return count if count >= 0 else None

    def pending(self):
        """Return the number of decrypted bytes that read() returns without touching the transport."""
        with self._lock:
            return self._lib.pggss_conn_pending(self._live_handle())

    # Sans-IO buffer transport.

    def feed(self, data):
        """Hand over bytes received from the network."""
        source, length = _input_pointer(data)
        with self._lock:
            handle = self._live_handle()
            self._check(self._lib.pggss_conn_feed(handle, source, length))

    def feed_eof(self):
        """Record that the network stream ended."""
        with self._lock:
            handle = self._live_handle()
            self._check(self._lib.pggss_conn_feed_eof(handle))

    def output_pending(self):
        """Return the number of bytes waiting to be taken with take_output()."""
        with self._lock:
            return self._lib.pggss_conn_output_pending(self._live_handle())

    def take_output(self, max_bytes=None):
        """Remove and return the bytes waiting to be sent, at most max_bytes. Returns b"" when none wait."""
        with self._lock:
            handle = self._live_handle()
            size = self._lib.pggss_conn_output_pending(handle)
            if max_bytes is not None:
                size = min(size, max_bytes)
            if size == 0:
                return b""
            buffer = ctypes.create_string_buffer(size)
            taken = self._lib.pggss_conn_take_output(handle, buffer, size)
            return buffer.raw[:taken]

    def wanted(self):
        """Return the minimum number of network bytes needed to make progress, or 0 when no read is needed."""
        with self._lock:
            return self._lib.pggss_conn_wanted(self._live_handle())

    # State.

    @property
    def outcome(self):
        with self._lock:
            return Outcome(self._lib.pggss_conn_outcome(self._live_handle()))

    @property
    def encrypted(self):
        """True when the connection is GSSAPI-encrypted, like libpq's PQgssEncInUse."""
        with self._lock:
            return bool(self._lib.pggss_conn_encryption_in_use(self._live_handle()))

    @property
    def error_message(self):
        """The last error message, or after a fallback to plaintext the reason for it, else ""."""
        with self._lock:
            return self._lib.pggss_conn_error_message(self._live_handle()).decode("utf-8", "replace")

    @property
    def last_result(self):
        with self._lock:
            code = self._lib.pggss_conn_last_result(self._live_handle())
        try:
            return Result(code)
        except ValueError:
            return code

    @property
    def max_plaintext(self):
        """Largest plaintext that one packet carries, or 0 when not encrypted."""
        with self._lock:
            return self._lib.pggss_conn_max_plaintext(self._live_handle())

    @property
    def credentials_delegated(self):
        with self._lock:
            return bool(self._lib.pggss_conn_credentials_delegated(self._live_handle()))

    @property
    def gss_context(self):
        """The gss_ctx_id_t as an integer address, or None. It belongs to the connection."""
        with self._lock:
            return self._lib.pggss_conn_gss_context(self._live_handle())

    def _principal(self, function):
        """Return the string that function writes, or None when the connection is not encrypted."""
        with self._lock:
            handle = self._live_handle()
            size = _PRINCIPAL_BUFFER_SIZE
            while True:
                buffer = ctypes.create_string_buffer(size)
                length = ctypes.c_size_t()
                code = function(handle, buffer, size, ctypes.byref(length))
                if code == Result.BUFFER_TOO_SMALL:
                    size = length.value + 1
                    continue
                if code == Result.INVALID_STATE:
                    return None
                self._check(code)
                return buffer.raw[: length.value].decode("utf-8", "replace")

    @property
    def client_principal(self):
        """The client principal, such as "alice@EXAMPLE.COM", or None when not encrypted."""
        return self._principal(self._lib.pggss_conn_client_principal)

    # Acceptor role.

    @property
    def client_user(self):
        """Acceptor: the authenticated client principal without its realm, or None when not encrypted."""
        return self._principal(self._lib.pggss_conn_client_user)

    def set_keytab(self, path):
        with self._lock:
            handle = self._live_handle()
            self._check(self._lib.pggss_acceptor_set_keytab(handle, str(path).encode()))

    def set_service(self, service):
        """Restrict acceptance to one host-based service, such as "postgres@localhost"."""
        with self._lock:
            handle = self._live_handle()
            self._check(self._lib.pggss_acceptor_set_service(handle, service.encode()))

    def set_decline(self, decline):
        """Decline GSSENCRequest with 'N' when decline is true, as a server without GSSAPI encryption does."""
        with self._lock:
            handle = self._live_handle()
            self._check(self._lib.pggss_acceptor_set_decline(handle, bool(decline)))

    def startup_packet(self):
        """Acceptor: return (StartupKind, bytes from the packet's start on, packet length) of a plaintext client's first packet."""
        kind = ctypes.c_int()
        data = ctypes.POINTER(ctypes.c_uint8)()
        length = ctypes.c_size_t()
        packet_length = ctypes.c_size_t()
        with self._lock:
            handle = self._live_handle()
            self._check(
                self._lib.pggss_conn_startup_packet(
                    handle, ctypes.byref(kind), ctypes.byref(data), ctypes.byref(length), ctypes.byref(packet_length)
                )
            )
            payload = ctypes.string_at(data, length.value) if length.value else b""
        return StartupKind(kind.value), payload, packet_length.value

    def store_delegated_credentials(self, ccache):
        """Acceptor: store the client's delegated credentials in a credential cache such as "MEMORY:x"."""
        with self._lock:
            handle = self._live_handle()
            self._check(self._lib.pggss_conn_store_delegated_credentials(handle, ccache.encode()))

