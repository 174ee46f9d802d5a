"""python/examples/asyncio_query.py against the fixture, as a program and imported."""

import asyncio
import importlib.util
import os
import subprocess
import sys

import pytest

import pggssenc

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "asyncio_query.py")


def run_example(*arguments):
    return subprocess.run(
        [sys.executable, EXAMPLE, *arguments], capture_output=True, text=True, timeout=60, check=False
    )


def test_example_reports_encrypted_session(fixture_env):
    completed = run_example("SELECT encrypted, principal FROM pg_stat_gssapi WHERE pid = pg_backend_pid()")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "encrypted|principal\nt|tester@PGGSS.TEST\n(1 row)\n"
    assert completed.stderr == "pggssenc: GSSAPI-encrypted as tester@PGGSS.TEST\n"


def test_example_prints_rows_and_nulls(fixture_env):
    completed = run_example("SELECT i, NULL AS missing FROM generate_series(1, 3) AS i")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "i|missing\n1|\n2|\n3|\n(3 rows)\n"


def test_example_reports_query_error(fixture_env):
    completed = run_example("SELECT 1/0")
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert completed.stderr.endswith("ERROR:  22012: division by zero\n")


def test_example_reports_refused_connection(fixture_env):
    completed = run_example("--hostaddr", "127.0.0.1", "--port", "1", "SELECT 1")
    assert completed.returncode == 1
    assert completed.stderr.startswith("connection failed: ConnectionRefusedError(")


def load_example():
    spec = importlib.util.spec_from_file_location("asyncio_query", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("size", [600_000])
def test_example_large_query_and_row(fixture_env, capsys, monkeypatch, size):
    """A query larger than the 256 KiB output queue, and a row of many packets, pass through the buffers."""
    example = load_example()
    write = pggssenc.Connection.write
    short_writes = []

    def counting_write(self, data):
        count = write(self, data)
        if count is None or count < len(data):
            short_writes.append((len(data), count))
        return count

    monkeypatch.setattr(pggssenc.Connection, "write", counting_write)
    query = f"SELECT length('{'x' * size}') AS sent, repeat('y', {size}) AS received"
    asyncio.run(example.main(example.parse_arguments([query])))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "sent|received"
    assert lines[1] == f"{size}|{'y' * size}"
    assert lines[2] == "(1 row)"
    # The full output queue made write() report fewer bytes than offered.
    assert short_writes
    assert all(offered > 256 * 1024 for offered, _ in short_writes)
