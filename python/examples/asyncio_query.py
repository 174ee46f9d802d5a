#!/usr/bin/env python3
"""Run one SQL query over a GSSAPI-encrypted PostgreSQL connection with asyncio.

pggssenc's sans-IO buffer API does the encryption, and asyncio moves the
bytes: received bytes go in with Connection.feed(), bytes to send come out
of Connection.take_output(). The query uses the simple query protocol.
Rows go to standard output in psql's unaligned format, with a header line
and a row count. Notices, the negotiation result and errors go to standard
error.

    PYTHONPATH=python python3 python/examples/asyncio_query.py "SELECT 1"

Defaults come from PGHOST, PGHOSTADDR, PGPORT, PGUSER and PGDATABASE. The
exit status is 0 on success, 1 when negotiation, login or the query fails.
"""

import argparse
import asyncio
import os
import struct
import sys

try:
    import pggssenc
except ImportError:
    # Running from a source checkout: the package is in python/, beside examples/.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import pggssenc

# Bytes requested from the network per read; a packet is at most 16 KiB.
READ_SIZE = 64 * 1024
PROTOCOL_VERSION_3_0 = 196608


class QueryError(Exception):
    """Negotiation, login or the query failed; the message is printed as is."""


class EncryptedStream:
    """A PostgreSQL byte stream over an asyncio stream pair, encrypted by a pggssenc buffer connection."""

    def __init__(self, conn, reader, writer):
        self.conn = conn
        self.reader = reader
        self.writer = writer

    async def flush(self):
        """Send every byte that pggssenc has queued."""
        while self.conn.output_pending():
            self.writer.write(self.conn.take_output())
        await self.writer.drain()

    async def receive(self):
        """Feed the next bytes from the network; wanted() is the minimum needed for progress."""
        data = await self.reader.read(max(self.conn.wanted(), READ_SIZE))
        if data:
            self.conn.feed(data)
        else:
            self.conn.feed_eof()

    async def negotiate(self):
        """Drive connect_poll: READING waits for network bytes, WRITING for queued output to leave."""
        while True:
            status = self.conn.connect_poll()
            await self.flush()
            if status == pggssenc.PollingStatus.OK:
                return self.conn.outcome
            if status == pggssenc.PollingStatus.READING:
                await self.receive()

    async def send(self, data):
        view = memoryview(data)
        while view:
            count = self.conn.write(view)
            # None means 256 KiB of output wait to be taken: flush, then
            # offer the same bytes again, as the retry rule requires.
            await self.flush()
            if count is not None:
                view = view[count:]

    async def recv_exact(self, count):
        data = bytearray()
        while len(data) < count:
            chunk = self.conn.read(count - len(data))
            if chunk is None:
                await self.receive()
            elif not chunk:
                raise QueryError("server closed the connection unexpectedly")
            else:
                data += chunk
        return bytes(data)

    async def recv_message(self):
        """Return the next backend message as (type byte, body)."""
        kind, length = struct.unpack("!cI", await self.recv_exact(5))
        return kind, await self.recv_exact(length - 4)


def build_message(kind, body):
    return kind + struct.pack("!I", len(body) + 4) + body


def build_startup_message(user, database):
    body = struct.pack("!I", PROTOCOL_VERSION_3_0)
    for key, value in (("user", user), ("database", database), ("application_name", "pggssenc-asyncio-example")):
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def parse_fields(body):
    """Parse the fields of an ErrorResponse or NoticeResponse into {code letter: text}."""
    fields = {}
    for item in body.split(b"\0"):
        if item:
            fields[chr(item[0])] = item[1:].decode("utf-8", "replace")
    return fields


def format_error(body):
    fields = parse_fields(body)
    return f"{fields.get('S', 'ERROR')}:  {fields.get('C', '?????')}: {fields.get('M', '')}"


def parse_row_description(body):
    (count,) = struct.unpack_from("!H", body)
    names, offset = [], 2
    for _ in range(count):
        end = body.index(b"\0", offset)
        names.append(body[offset:end].decode())
        # Name, then table OID, column number, type OID, size, modifier, format: 18 bytes.
        offset = end + 1 + 18
    return names


def parse_data_row(body):
    (count,) = struct.unpack_from("!H", body)
    values, offset = [], 2
    for _ in range(count):
        (length,) = struct.unpack_from("!i", body, offset)
        offset += 4
        if length < 0:
            # psql's unaligned format prints NULL as an empty string.
            values.append("")
        else:
            values.append(body[offset : offset + length].decode("utf-8", "replace"))
            offset += length
    return values


async def wait_until_ready(stream):
    """Read the login responses up to ReadyForQuery."""
    while True:
        kind, body = await stream.recv_message()
        if kind == b"R":
            (method,) = struct.unpack_from("!I", body)
            if method != 0:
                raise QueryError(f"server requested authentication method {method}, which this example does not implement")
        elif kind == b"E":
            raise QueryError(format_error(body))
        elif kind == b"N":
            print(format_error(body), file=sys.stderr)
        elif kind == b"Z":
            return
        # ParameterStatus ('S') and BackendKeyData ('K') are not needed here.


async def run_query(stream, query):
    """Send a simple Query, print its rows, and return the error text or None."""
    await stream.send(build_message(b"Q", query.encode() + b"\0"))
    error = None
    rows = 0
    while True:
        kind, body = await stream.recv_message()
        if kind == b"T":
            print("|".join(parse_row_description(body)))
        elif kind == b"D":
            print("|".join(parse_data_row(body)))
            rows += 1
        elif kind == b"C":
            tag = body.rstrip(b"\0").decode()
            if tag.startswith("SELECT"):
                print(f"({rows} row{'' if rows == 1 else 's'})")
            else:
                print(tag)
            rows = 0
        elif kind == b"E":
            error = format_error(body)
        elif kind == b"N":
            print(format_error(body), file=sys.stderr)
        elif kind == b"Z":
            return error


async def main(args):
    conn = pggssenc.Connection.client()
    writer = None
    try:
        conn.set_param("host", args.host)
        conn.set_param("gssencmode", args.gssencmode)
        conn.use_buffers()
        reader, writer = await asyncio.open_connection(args.hostaddr or args.host, args.port)
        stream = EncryptedStream(conn, reader, writer)

        outcome = await stream.negotiate()
        if outcome == pggssenc.Outcome.ENCRYPTED:
            print(f"pggssenc: GSSAPI-encrypted as {conn.client_principal}", file=sys.stderr)
        else:
            print(f"pggssenc: not encrypted ({outcome.name}): {conn.error_message}", file=sys.stderr)

        await stream.send(build_startup_message(args.user, args.dbname))
        await wait_until_ready(stream)
        error = await run_query(stream, args.query)
        await stream.send(build_message(b"X", b""))
        if error is not None:
            raise QueryError(error)
    finally:
        if writer is not None:
            writer.close()
            await writer.wait_closed()
        conn.free()


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description="Run one query over a GSSAPI-encrypted PostgreSQL connection.")
    parser.add_argument("query", help="SQL text, sent with the simple query protocol")
    parser.add_argument("--host", default=os.environ.get("PGHOST", "localhost"),
                        help="server host name; the Kerberos target is krbsrvname@host (default: PGHOST or localhost)")
    parser.add_argument("--hostaddr", default=os.environ.get("PGHOSTADDR"),
                        help="IP address to connect to instead of resolving --host (default: PGHOSTADDR)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PGPORT", "5432")),
                        help="TCP port (default: PGPORT or 5432)")
    parser.add_argument("--user", default=os.environ.get("PGUSER", "postgres"), help="database user (default: PGUSER)")
    parser.add_argument("--dbname", default=os.environ.get("PGDATABASE"),
                        help="database name (default: PGDATABASE, else the user name)")
    parser.add_argument("--gssencmode", choices=("disable", "prefer", "require"), default="require",
                        help="libpq's gssencmode (default: require)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds allowed for the whole run (default: 30)")
    args = parser.parse_args(argv)
    if args.dbname is None:
        args.dbname = args.user
    return args


if __name__ == "__main__":
    arguments = parse_arguments(sys.argv[1:])
    try:
        asyncio.run(asyncio.wait_for(main(arguments), arguments.timeout))
    except QueryError as failure:
        print(failure, file=sys.stderr)
        sys.exit(1)
    except pggssenc.PgGssError as failure:
        print(f"pggssenc: {failure}", file=sys.stderr)
        sys.exit(1)
    except (OSError, asyncio.TimeoutError) as failure:
        print(f"connection failed: {failure!r}", file=sys.stderr)
        sys.exit(1)
