"""pg8000, unmodified, over a GSSSocket to the fixture's hostgssenc-only PostgreSQL.

pg8000 1.31.6 takes a connected socket-like object through its `sock`
parameter and calls sock.makefile(mode="rwb"). ssl_context=False stops it
from sending an SSLRequest, which PostgreSQL rejects inside a
GSSAPI-encrypted connection.
"""

import hashlib
import io
import time

import pg8000.native
import pytest

import pggssenc

GSS_STATUS_QUERY = "SELECT gss_authenticated, principal, encrypted FROM pg_stat_gssapi WHERE pid = pg_backend_pid()"
# About 12 MB of COPY text: "i<TAB>md5(i)" per row.
COPY_ROWS = 300_000
MIN_COPY_BYTES = 10 * 1024 * 1024


def connect_pg8000(gss_socket, user="tester", database="tester"):
    return pg8000.native.Connection(user, database=database, sock=gss_socket, ssl_context=False)


@pytest.fixture
def pg(gss_socket):
    con = connect_pg8000(gss_socket)
    yield con
    con.close()


def test_pg_stat_gssapi_shows_encryption(pg, gss_socket, fixture_env):
    rows = pg.run(GSS_STATUS_QUERY)

    assert rows == [[True, fixture_env["PGGSS_PRINCIPAL"], True]]
    assert fixture_env["PGGSS_PRINCIPAL"] == "tester@PGGSS.TEST"
    assert gss_socket.encrypted is True
    assert gss_socket.outcome == pggssenc.Outcome.ENCRYPTED
    assert gss_socket.client_principal == "tester@PGGSS.TEST"


def test_copy_out_and_in_roundtrip(pg):
    exported = io.BytesIO()
    # COPY takes no bind parameters, so the row count is part of the text.
    pg.run(f"COPY (SELECT i, md5(i::text) FROM generate_series(1, {COPY_ROWS}) AS i) TO STDOUT", stream=exported)
    data = exported.getvalue()
    assert len(data) >= MIN_COPY_BYTES
    assert data.count(b"\n") == COPY_ROWS
    assert data.startswith(b"1\t" + hashlib.md5(b"1").hexdigest().encode() + b"\n")

    pg.run("CREATE TEMPORARY TABLE copied (i integer, digest text)")
    pg.run("COPY copied FROM STDIN", stream=io.BytesIO(data))
    assert pg.row_count == COPY_ROWS

    reexported = io.BytesIO()
    pg.run("COPY (SELECT i, digest FROM copied ORDER BY i) TO STDOUT", stream=reexported)
    assert hashlib.sha256(reexported.getvalue()).hexdigest() == hashlib.sha256(data).hexdigest()

    # The server's own checksum of the imported rows matches the client's.
    [[server_digest]] = pg.run("SELECT md5(string_agg(i || E'\\t' || digest || E'\\n', '' ORDER BY i)) FROM copied")
    assert server_digest == hashlib.md5(data).hexdigest()


def test_server_errors_keep_connection_usable(pg):
    with pytest.raises(pg8000.native.DatabaseError) as division:
        pg.run("SELECT 1/0")
    assert division.value.args[0]["C"] == "22012"
    assert division.value.args[0]["M"] == "division by zero"

    with pytest.raises(pg8000.native.DatabaseError) as syntax:
        pg.run("SELEC 1")
    assert syntax.value.args[0]["C"] == "42601"

    assert pg.run("SELECT 41 + 1") == [[42]]
    assert pg.run(GSS_STATUS_QUERY)[0][2] is True


def test_socket_timeout_inside_query(gss_socket):
    """A socket timeout shorter than the query ends the wait with TimeoutError.

    pg8000 1.31.6 reads the first byte of each response outside its
    OSError handler (core._read), so the TimeoutError reaches the caller
    as it is rather than as InterfaceError.
    """
    con = connect_pg8000(gss_socket)
    gss_socket.settimeout(0.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="^timed out$"):
        con.run("SELECT pg_sleep(3)")
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 2.0
    gss_socket.close()


def test_pg8000_close_closes_socket(gss_socket):
    con = connect_pg8000(gss_socket)
    fd = gss_socket.fileno()
    assert fd >= 0
    con.close()
    # pg8000 drops its makefile() file, which was the last reference.
    assert gss_socket.closed is True
    assert gss_socket.fileno() == -1


def test_prefer_over_unix_socket_is_plaintext(unix_socket):
    gss = pggssenc.wrap_socket(unix_socket(), host="localhost", gssencmode="prefer")
    assert gss.encrypted is False
    assert gss.outcome == pggssenc.Outcome.SERVER_DECLINED
    assert "server declined GSSAPI encryption ('N')" in gss.negotiation_message

    # pg_hba.conf has "local all all trust": pg8000 logs in over the plaintext socket.
    con = connect_pg8000(gss)
    try:
        assert con.run(GSS_STATUS_QUERY) == [[False, None, False]]
    finally:
        con.close()


def test_prefer_without_credentials_passes_plaintext(tcp_socket):
    gss = pggssenc.wrap_socket(tcp_socket(), host="localhost", gssencmode="prefer", ccache="FILE:/nonexistent/ccache")
    assert gss.encrypted is False
    assert gss.outcome == pggssenc.Outcome.NO_CREDENTIALS
    assert gss.negotiation_message.startswith("no usable Kerberos credentials: ")

    # The server accepts TCP only with hostgssenc, so it rejects the
    # plaintext StartupMessage, and its error reaches pg8000 unchanged.
    with pytest.raises(pg8000.native.DatabaseError) as raised:
        connect_pg8000(gss)
    assert raised.value.args[0]["C"] == "28000"
    assert "no encryption" in raised.value.args[0]["M"]
    gss.close()
