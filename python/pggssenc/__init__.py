"""Python binding of pggssenc: GSSAPI (Kerberos) session encryption for PostgreSQL connections.

Typical use with a driver that accepts a connected socket, such as pg8000::

    import socket
    import pg8000.native
    import pggssenc

    sock = socket.create_connection(("127.0.0.1", 5432), timeout=10)
    gss = pggssenc.wrap_socket(sock, host="localhost", gssencmode="require")
    con = pg8000.native.Connection("alice", database="app", sock=gss, ssl_context=False)

The shared library is loaded on first use; see _library.find_library for the
search order.
"""

from ._library import LibraryLocation, find_library, library_location, library_version, load_library, result_text
from .connection import Connection
from .errors import (
    GssFailureError,
    LibraryNotFoundError,
    NoCredentialsError,
    Outcome,
    ParameterError,
    PgGssError,
    PollingStatus,
    ProtocolError,
    Result,
    ServerDeclinedError,
    ServerErrorResponseError,
    StartupKind,
    StateError,
    TransportError,
)
from .gsssocket import GSSSocket, GSSSocketIO, wrap_socket

__all__ = [
    "Connection",
    "GSSSocket",
    "GSSSocketIO",
    "GssFailureError",
    "LibraryLocation",
    "LibraryNotFoundError",
    "NoCredentialsError",
    "Outcome",
    "ParameterError",
    "PgGssError",
    "PollingStatus",
    "ProtocolError",
    "Result",
    "ServerDeclinedError",
    "ServerErrorResponseError",
    "StartupKind",
    "StateError",
    "TransportError",
    "find_library",
    "library_location",
    "library_version",
    "load_library",
    "result_text",
    "wrap_socket",
]
