#!/usr/bin/env python3
"""Writes the seed corpus in corpus/<target>/. Each seed is a small input in
the layout that the target's header comment describes. The files are
committed: rerun this only after changing a layout."""

import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent / "corpus"


def frame(token: bytes) -> bytes:
    return struct.pack(">I", len(token)) + token


def write(target: str, name: str, data: bytes) -> None:
    directory = ROOT / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)


def push(data: bytes) -> bytes:
    """frame_decoder operation 0: push up to 255 bytes."""
    assert len(data) <= 255
    return bytes([0, len(data)]) + data


def spare(data: bytes, room: int) -> bytes:
    """frame_decoder operation 1: write into spare space of `room` bytes."""
    assert len(data) <= room <= 255
    return bytes([1, room]) + data


DRAIN = bytes([2, 0])
SWITCH_LIMIT = bytes([3, 0])

write("frame_decoder", "two-packets", b"\x00" + push(frame(b"abc") + frame(b"defg")) + DRAIN)
write("frame_decoder", "split-word", b"\x00" + push(b"\x00\x00") + DRAIN + push(b"\x00\x02hi") + DRAIN)
write("frame_decoder", "spare-short-read", b"\x01" + spare(b"\x00\x00\x00\x05he", 200) + push(b"llo") + DRAIN)
write("frame_decoder", "zero-length", b"\x00" + push(b"\x00\x00\x00\x00") + DRAIN)
write("frame_decoder", "limit-16384", b"\x00" + push(b"\x00\x00\x3f\xfc") + DRAIN + push(b"\x00\x00\x3f\xfd") + DRAIN)
write("frame_decoder", "small-limit", b"\x02\x00\x03" + push(frame(b"ab") + frame(b"abcd")) + DRAIN)
write("frame_decoder", "switch-limit", b"\x01" + push(b"\x00\x00\x40\x00") + SWITCH_LIMIT + DRAIN)
write("frame_decoder", "huge-length", b"\x00" + push(b"\x7f\xff\xff\xffxyz") + DRAIN)


def script(*actions: int) -> bytes:
    return bytes([len(actions)]) + bytes(actions)


def send(count: int = 255) -> bytes:
    return bytes([0, count])


def receive(data: bytes) -> bytes:
    assert len(data) <= 255
    return bytes([1, len(data)]) + data


EOF_OP = bytes([2, 0])
# Continue with a 3-byte token, then complete with every service granted.
FULL = script(0x21, 0x1E)

write("negotiation", "handshake", FULL + send(8) + receive(b"G") + send() + receive(frame(b"AP-REP")) + send())
write("negotiation", "handshake-pipelined", FULL + send() + receive(b"G") + send() + receive(frame(b"AP") + b"\x00\x00\x00\x10xx"))
write("negotiation", "declined", FULL + send() + receive(b"N"))
write("negotiation", "declined-extra", FULL + send() + receive(b"Nxyz"))
write("negotiation", "error-response", FULL + send() + receive(b"E\x00\x00\x00\x20SFATAL\x00\x1b[31mhttp://evil.example/\x00"))
write("negotiation", "injection", FULL + send() + receive(b"G\x00\x00\x00\x01A"))
write("negotiation", "unknown-byte", FULL + send() + receive(b"\x1b"))
write("negotiation", "eof", FULL + send() + EOF_OP)
write("negotiation", "truncated", FULL + send() + receive(b"G") + send() + receive(b"\x00\x00\x01\x00abc") + EOF_OP)
write("negotiation", "no-mutual", script(0x21, 0x1A) + send() + receive(b"G") + send() + receive(frame(b"x")))
write("negotiation", "rounds", script() + send() + receive(b"G") + b"".join(send() + receive(frame(b"c")) for _ in range(17)))
write("negotiation", "oversize", FULL + send() + receive(b"G\x00\x01\x00\x00"))

write("startup", "gssenc-request", struct.pack(">II", 8, 80877104))
write("startup", "ssl-request", struct.pack(">II", 8, 80877103))
write("startup", "cancel-request", struct.pack(">IIII", 16, 80877102, 1234, 5678))
body = b"user\x00tester\x00database\x00tester\x00\x00"
write("startup", "startup-message", struct.pack(">II", 8 + len(body), 196608) + body)
write("startup", "gssenc-pipelined", struct.pack(">II", 8, 80877104) + struct.pack(">II", 8 + len(body), 196608) + body)
write("startup", "length-7", struct.pack(">I", 7))
write("startup", "length-10001", struct.pack(">I", 10001))
write("startup", "protocol-2", struct.pack(">II", 8, 2 << 16))

write("conninfo", "key-value", b"host=localhost gssencmode=require krbsrvname=postgres")
write("conninfo", "quoted", b"host = 'db host' application_name='it\\'s' krbsrvname=a\\ b")
write("conninfo", "uri", b"postgresql://alice:secret@db.example.com:5433/sales?gssencmode=require&krbsrvname=pg%2Dsvc")
write("conninfo", "uri-ipv6", b"postgres://[::1]:5432/db?gssdelegation=1")
write("conninfo", "uri-multi-host", b"postgresql://a:1,b:2/db")
write("conninfo", "unterminated", b"host='abc")
write("conninfo", "percent", b"postgresql:///db?host=%6c%6fcalhost&ccache=FILE%3A%2Ftmp%2Fcc")


def segment(data: bytes) -> bytes:
    """session operation 0: queue a received segment."""
    assert len(data) <= 255
    return bytes([0, len(data)]) + data


def read(size: int) -> bytes:
    """session operation 1: read into a buffer of size bytes."""
    assert 1 <= size <= 256
    return bytes([1, size - 1])


def write_op(data: bytes, capacity_units: int) -> bytes:
    """session operation 2: write data with a send capacity of 64-byte units."""
    return bytes([2, len(data)]) + data + bytes([capacity_units])


END = bytes([3, 0])


def token(flag: int, plaintext: bytes) -> bytes:
    return frame(bytes([flag]) + plaintext)


write("session", "two-packets", b"\x00" + segment(token(1, b"hello") + token(1, b"world")) + read(3) + read(64) + read(64))
write("session", "split-packet", b"\x00" + segment(token(1, b"abcdef")[:5]) + read(8) + segment(token(1, b"abcdef")[5:]) + read(8))
write("session", "valid-then-bad", b"\x00" + segment(token(1, b"ok") + token(7, b"bad")) + read(64) + read(64) + read(64))
write("session", "integrity-only", b"\x00" + segment(token(0, b"clear")) + read(16))
write("session", "zero-length", b"\x00" + segment(token(1, b"a") + b"\x00\x00\x00\x00") + read(1) + read(1))
write("session", "oversize", b"\x00" + segment(b"\x00\x00\x40\x01") + read(16))
write("session", "truncated-eof", b"\x00" + segment(token(1, b"abcdef")[:6]) + END + read(16))
write("session", "clean-eof", b"\x00" + segment(token(1, b"x")) + END + read(16) + read(16))
write("session", "write-blocked", b"\x04" + write_op(b"0123456789abcdef" * 4, 0) + write_op(b"", 1) + write_op(b"tail", 9))

RELEASE = bytes([4, 0])
write("frame_decoder", "release-between-reads", b"\x00" + push(frame(b"abc")) + DRAIN + RELEASE + push(frame(b"de")[:3]) + RELEASE + push(frame(b"de")[3:]) + DRAIN)

# acceptance: a flags byte (bit 0: accept), then a script as for negotiation
# in the acceptor's encoding. 0x2E completes with a 4-byte reply,
# confidentiality and integrity. 0x0E does the same without a reply token.
# 0x11 continues with a 2-byte token. 0x26 completes without integrity.
ACCEPT = b"\x01"
write("acceptance", "complete-with-reply", ACCEPT + script(0x2E) + send() + receive(frame(b"AP-REQ")) + send())
write("acceptance", "complete-no-reply-pipelined", ACCEPT + script(0x0E) + send() + receive(frame(b"AP-REQ") + frame(b"\x01wrapped")))
write("acceptance", "two-rounds", ACCEPT + script(0x11, 0x2E) + send() + receive(frame(b"t1")) + send() + receive(frame(b"t2")) + send())
write("acceptance", "token-before-reply-sent", ACCEPT + script(0x11, 0x2E) + send() + receive(frame(b"t1")) + receive(frame(b"t2")))
write("acceptance", "bytes-before-response", ACCEPT + script(0x2E) + receive(frame(b"x")))
write("acceptance", "declined-then-bytes", b"\x00" + script() + send() + receive(struct.pack(">II", 8, 80877104)))
write("acceptance", "bytes-behind-token", ACCEPT + script(0x2E) + send() + receive(frame(b"tok") + b"junk"))
write("acceptance", "rounds", ACCEPT + script() + send() + b"".join(receive(frame(b"c")) + send() for _ in range(17)))
write("acceptance", "oversize", ACCEPT + script(0x2E) + send() + receive(b"\x00\x01\x00\x00"))
write("acceptance", "truncated-eof", ACCEPT + script(0x2E) + send() + receive(b"\x00\x00\x01\x00abc") + EOF_OP)
write("acceptance", "no-integrity", ACCEPT + script(0x26) + send() + receive(frame(b"AP-REQ")))
