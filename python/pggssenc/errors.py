"""Result codes, enumerations and exceptions of the pggssenc C library.

The numbers mirror the enums of include/pggssenc.h and are stable there.
Every exception derives from OSError, as ssl.SSLError does, so that code
written for sockets (pg8000 included) treats a failed encrypted stream as a
network error.
"""

import enum


class Result(enum.IntEnum):
    """Result code of a pggssenc call (pggss_result)."""

    OK = 0
    NULL_PARAMETER = 1
    INVALID_PARAMETER = 2
    PANIC = 3
    INVALID_STATE = 4
    BUFFER_TOO_SMALL = 5
    WOULD_BLOCK = 6
    IO = 100
    SERVER_DECLINED = 101
    SERVER_ERROR_RESPONSE = 102
    NO_CREDENTIALS = 103
    UNEXPECTED_RESPONSE = 104
    UNEXPECTED_EOF = 105
    PLAINTEXT_INJECTION = 106
    PACKET_TOO_LARGE = 107
    EMPTY_PACKET = 108
    GSS_FAILURE = 109
    SERVICES_NOT_GRANTED = 110
    NO_CONFIDENTIALITY = 111
    RETRY_TOO_SHORT = 112
    HOST_MISSING = 113
    TOO_MANY_ROUNDS = 114
    INVALID_STARTUP_PACKET = 115


class Outcome(enum.IntEnum):
    """Result of negotiation (pggss_outcome)."""

    PENDING = 0
    ENCRYPTED = 1
    SERVER_DECLINED = 2
    NO_CREDENTIALS = 3
    DISABLED = 4
    FAILED = 5
    NOT_REQUESTED = 6
    DECLINED = 7


class PollingStatus(enum.IntEnum):
    """Return value of the poll functions, with libpq's numbers (pggss_polling_status)."""

    FAILED = 0
    READING = 1
    WRITING = 2
    OK = 3


class StartupKind(enum.IntEnum):
    """Kind of the first packet a client sent (pggss_startup_kind)."""

    GSSENC_REQUEST = 1
    SSL_REQUEST = 2
    CANCEL_REQUEST = 3
    STARTUP_MESSAGE = 4


class LibraryNotFoundError(OSError):
    """libpggssenc could not be found or loaded."""


class PgGssError(OSError):
    """A pggssenc call failed.

    ``code`` is the Result, ``message`` the library's error text. For
    Result.IO, ``errno`` is the operating-system error of the transport;
    otherwise it is None.
    """

    def __init__(self, code, message, os_errno=None):
        try:
            code = Result(code)
        except ValueError:
            # A newer library may return a code this binding does not know.
            pass
        if os_errno is None:
            super().__init__(message)
        else:
            super().__init__(os_errno, message)
        self.code = code
        self.message = message

    def __str__(self):
        return self.message

    def __repr__(self):
        code = self.code.name if isinstance(self.code, Result) else self.code
        return f"{type(self).__name__}({code}, {self.message!r})"


class ParameterError(PgGssError, ValueError):
    """A parameter or connection string is invalid, or host is not set."""


class StateError(PgGssError):
    """The call does not fit the connection's state, for example after a failure."""


class TransportError(PgGssError):
    """The socket or callback transport failed; ``errno`` has the OS error."""


class ServerDeclinedError(PgGssError):
    """The server declined GSSENCRequest with 'N' while gssencmode is "require"."""


class ServerErrorResponseError(PgGssError):
    """The server sent an error in response to GSSENCRequest, and the socket is unusable."""


class NoCredentialsError(PgGssError):
    """No usable Kerberos credentials were found."""


class GssFailureError(PgGssError):
    """A GSSAPI call failed or the context lacks required services.

    The message contains the GSSAPI major and minor status text.
    """


class ProtocolError(PgGssError):
    """The peer broke the GSSAPI encryption protocol or closed the stream mid-packet."""


_ERROR_CLASSES = {
    Result.INVALID_PARAMETER: ParameterError,
    Result.HOST_MISSING: ParameterError,
    Result.INVALID_STATE: StateError,
    Result.IO: TransportError,
    Result.SERVER_DECLINED: ServerDeclinedError,
    Result.SERVER_ERROR_RESPONSE: ServerErrorResponseError,
    Result.NO_CREDENTIALS: NoCredentialsError,
    Result.GSS_FAILURE: GssFailureError,
    Result.SERVICES_NOT_GRANTED: GssFailureError,
    Result.UNEXPECTED_RESPONSE: ProtocolError,
    Result.UNEXPECTED_EOF: ProtocolError,
    Result.PLAINTEXT_INJECTION: ProtocolError,
    Result.PACKET_TOO_LARGE: ProtocolError,
    Result.EMPTY_PACKET: ProtocolError,
    Result.NO_CONFIDENTIALITY: ProtocolError,
    Result.TOO_MANY_ROUNDS: ProtocolError,
    Result.INVALID_STARTUP_PACKET: ProtocolError,
}


def error_for(code, message, os_errno=None):
    """Build the exception for a result code: the most specific subclass of PgGssError."""
    try:
        cls = _ERROR_CLASSES.get(Result(code), PgGssError)
    except ValueError:
        cls = PgGssError
    if cls is not TransportError:
        os_errno = None
    return cls(code, message, os_errno)
