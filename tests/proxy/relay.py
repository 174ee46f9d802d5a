#!/usr/bin/env python3
"""Recording TCP relay for the pggss-proxy tests.

Listens on 127.0.0.1 (port 0 picks a free one and prints it), forwards each
connection to a target (tcp:HOST:PORT or unix:/path), and writes into
--record-dir, for connection number N (from 1):

  conn-N.open    created when the connection is accepted
  conn-N.c2s     bytes from the connecting side to the target (with --record)
  conn-N.s2c     bytes from the target back (with --record)
  conn-N.done    created once both directions have ended
  conn-N.paused  created when --pause-c2s-after starts its pause

Standard library only. One thread per direction; runs until SIGTERM.
"""

import argparse
import itertools
import os
import signal
import socket
import sys
import threading
import time

CHUNK_SIZE = 64 * 1024


def parse_target(text):
    if text.startswith("unix:"):
        return socket.AF_UNIX, text[len("unix:"):]
    if text.startswith("tcp:"):
        host, _, port = text[len("tcp:"):].rpartition(":")
        return socket.AF_INET, (host, int(port))
    raise ValueError(f"invalid target {text!r}; expected tcp:HOST:PORT or unix:/path")


def pump(source, destination, record_path, finished, pause=None):
    """Copy bytes from source to destination until end of stream, then half-close.

    pause is None or (byte count, seconds, marker path): once that many bytes
    were forwarded, stop reading for that many seconds, once.
    """
    record = open(record_path, "wb") if record_path else None
    forwarded = 0
    try:
        while True:
            if pause and forwarded >= pause[0]:
                open(pause[2], "wb").close()
                time.sleep(pause[1])
                pause = None
            try:
                data = source.recv(CHUNK_SIZE)
            except OSError:
                data = b""
            if not data:
                break
            if record:
                record.write(data)
                record.flush()
            try:
                destination.sendall(data)
            except OSError:
                break
            forwarded += len(data)
    finally:
        if record:
            record.close()
        try:
            destination.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finished.release()


def serve_connection(client, number, args):
    base = os.path.join(args.record_dir, f"conn-{number}")
    open(base + ".open", "wb").close()
    family, address = parse_target(args.target)
    target = socket.socket(family, socket.SOCK_STREAM)
    try:
        target.connect(address)
    except OSError as err:
        print(f"relay: connection {number}: could not connect to {args.target}: {err}", file=sys.stderr)
        client.close()
        target.close()
        open(base + ".done", "wb").close()
        return

    finished = threading.Semaphore(0)
    pause = None
    if args.pause_c2s_after is not None:
        pause = (args.pause_c2s_after, args.pause_seconds, base + ".paused")
    directions = [
        (client, target, base + ".c2s" if args.record else None, pause),
        (target, client, base + ".s2c" if args.record else None, None),
    ]
    for source, destination, path, direction_pause in directions:
        threading.Thread(target=pump, args=(source, destination, path, finished, direction_pause),
                         daemon=True).start()
    finished.acquire()
    finished.acquire()
    client.close()
    target.close()
    open(base + ".done", "wb").close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 to listen on (0: a free port)")
    parser.add_argument("--target", required=True, help="tcp:HOST:PORT or unix:/path to forward to")
    parser.add_argument("--record-dir", required=True, help="directory for the per-connection files")
    parser.add_argument("--record", action="store_true", help="write the bytes of both directions")
    parser.add_argument("--pause-c2s-after", type=int, metavar="BYTES",
                        help="stop reading the connecting side once this many bytes were forwarded")
    parser.add_argument("--pause-seconds", type=float, default=4.0,
                        help="length of that pause in seconds (default 4)")
    args = parser.parse_args()
    parse_target(args.target)
    os.makedirs(args.record_dir, exist_ok=True)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(128)
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    for number in itertools.count(1):
        client, _ = listener.accept()
        threading.Thread(target=serve_connection, args=(client, number, args), daemon=True).start()


if __name__ == "__main__":
    main()
