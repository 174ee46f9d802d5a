#!/usr/bin/env python3
"""Misbehaving PostgreSQL clients for the pggss-proxy tests.

Usage: hostile.py CASE PORT

Each case connects to 127.0.0.1:PORT, misbehaves, and checks exactly what
the proxy sends back. It prints "local_port=N" (so that the caller can find
the proxy's log line for this connection) and then "ok: ..." with exit
status 0, or "failed: ..." with exit status 1.
"""

import socket
import struct
import sys
import time

GSSENC_REQUEST = bytes.fromhex("0000000804d21630")
SSL_REQUEST = bytes.fromhex("0000000804d2162f")
# Seconds to wait for the proxy to reply or close the connection.
REPLY_TIMEOUT = 8.0


class CaseFailed(Exception):
    pass


def startup_message(user="tester", database="tester"):
    body = struct.pack("!I", 196608)
    for key, value in (("user", user), ("database", database)):
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT)
    print(f"local_port={sock.getsockname()[1]}", flush=True)
    return sock


def receive_until_close(sock, limit=65536):
    """Return all bytes the proxy sends until it closes the connection."""
    received = b""
    while len(received) < limit:
        try:
            data = sock.recv(limit - len(received))
        except ConnectionResetError:
            break
        except socket.timeout:
            raise CaseFailed(f"the proxy did not close the connection within {REPLY_TIMEOUT} s; "
                             f"received {received!r}")
        if not data:
            break
        received += data
    return received


def receive_exactly(sock, count):
    received = b""
    while len(received) < count:
        data = sock.recv(count - len(received))
        if not data:
            raise CaseFailed(f"connection closed after {received!r}; expected {count} bytes")
        received += data
    return received


def expect_closed_silently(sock):
    received = receive_until_close(sock)
    if received:
        raise CaseFailed(f"expected the proxy to close without sending anything, received {received!r}")


def parse_error_response(data):
    """Return the fields of one ErrorResponse at the start of data, and the bytes after it."""
    if len(data) < 5 or data[0:1] != b"E":
        raise CaseFailed(f"expected an ErrorResponse, received {data!r}")
    length = struct.unpack("!I", data[1:5])[0]
    if len(data) < 1 + length:
        raise CaseFailed(f"truncated ErrorResponse {data!r}")
    body = data[5:1 + length]
    if not body.endswith(b"\0\0"):
        raise CaseFailed(f"ErrorResponse fields are not terminated: {data!r}")
    fields = {}
    for field in body[:-1].split(b"\0")[:-1]:
        fields[chr(field[0])] = field[1:].decode()
    return fields, data[1 + length:]


def expect_fatal_28000(sock):
    fields, rest = parse_error_response(receive_until_close(sock))
    expected = {
        "S": "FATAL",
        "V": "FATAL",
        "C": "28000",
        "M": "GSSAPI encryption is required by pggss-proxy; connect with gssencmode=require",
    }
    if fields != expected:
        raise CaseFailed(f"ErrorResponse fields {fields!r}, expected {expected!r}")
    if rest:
        raise CaseFailed(f"bytes after the ErrorResponse: {rest!r}")


def expect_go_ahead(sock):
    answer = receive_exactly(sock, 1)
    if answer != b"G":
        raise CaseFailed(f"expected 'G' after GSSENCRequest, received {answer!r}")


def case_pipelined_startup(port):
    sock = connect(port)
    sock.sendall(GSSENC_REQUEST + startup_message())
    expect_closed_silently(sock)
    return "GSSENCRequest with a pipelined StartupMessage: closed without an answer"


def case_startup_length_max(port):
    sock = connect(port)
    sock.sendall(struct.pack("!I", 0x7FFFFFFF) + struct.pack("!I", 196608))
    expect_closed_silently(sock)
    return "startup length 0x7FFFFFFF: closed without an answer"


def handshake_length_case(port, length):
    sock = connect(port)
    sock.sendall(GSSENC_REQUEST)
    expect_go_ahead(sock)
    sock.sendall(struct.pack("!I", length))
    expect_closed_silently(sock)
    return f"handshake length word {length:#x}: 'G', then closed"


def case_handshake_length_max(port):
    return handshake_length_case(port, 0x7FFFFFFF)


def case_handshake_length_65537(port):
    return handshake_length_case(port, 65537)


def case_garbage_token(port):
    sock = connect(port)
    sock.sendall(GSSENC_REQUEST)
    expect_go_ahead(sock)
    token = bytes(range(64)) * 2
    sock.sendall(struct.pack("!I", len(token)) + token)
    expect_closed_silently(sock)
    return "garbage GSSAPI token: 'G', then closed"


def case_stalled_handshake(port):
    sock = connect(port)
    sock.sendall(GSSENC_REQUEST)
    started = time.monotonic()
    expect_go_ahead(sock)
    expect_closed_silently(sock)
    elapsed = time.monotonic() - started
    print(f"elapsed={elapsed:.2f}")
    return f"stalled after 'G': closed after {elapsed:.2f} s"


def case_plaintext_startup(port):
    sock = connect(port)
    sock.sendall(startup_message())
    expect_fatal_28000(sock)
    return "plaintext StartupMessage: FATAL 28000, then closed"


def case_ssl_then_startup(port):
    sock = connect(port)
    sock.sendall(SSL_REQUEST)
    answer = receive_exactly(sock, 1)
    if answer != b"N":
        raise CaseFailed(f"expected 'N' after SSLRequest, received {answer!r}")
    sock.sendall(startup_message())
    expect_fatal_28000(sock)
    return "SSLRequest: 'N'; StartupMessage: FATAL 28000, then closed"


def case_http_garbage(port):
    sock = connect(port)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    expect_closed_silently(sock)
    return "HTTP request as startup packet: closed without an answer"


def case_over_max_clients(port):
    """With --max-clients 1: a second client is closed while the first is open."""
    first = connect(port)
    first.sendall(GSSENC_REQUEST)
    expect_go_ahead(first)
    second = socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT)
    print(f"second_local_port={second.getsockname()[1]}", flush=True)
    try:
        second.sendall(GSSENC_REQUEST)
    except (BrokenPipeError, ConnectionResetError):
        pass
    expect_closed_silently(second)
    first.close()
    return "second client closed without an answer while the first was open"


CASES = {
    "pipelined-startup": case_pipelined_startup,
    "startup-length-max": case_startup_length_max,
    "handshake-length-max": case_handshake_length_max,
    "handshake-length-65537": case_handshake_length_65537,
    "garbage-token": case_garbage_token,
    "stalled-handshake": case_stalled_handshake,
    "plaintext-startup": case_plaintext_startup,
    "ssl-then-startup": case_ssl_then_startup,
    "http-garbage": case_http_garbage,
    "over-max-clients": case_over_max_clients,
}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in CASES:
        print(f"usage: hostile.py CASE PORT; cases: {', '.join(CASES)}", file=sys.stderr)
        return 2
    try:
        summary = CASES[sys.argv[1]](int(sys.argv[2]))
    except CaseFailed as err:
        print(f"failed: {err}")
        return 1
    except OSError as err:
        print(f"failed: socket error: {err}")
        return 1
    print(f"ok: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
