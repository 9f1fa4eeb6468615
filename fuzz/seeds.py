"""Writes the committed seed corpus: valid and near-valid inputs for every target.
Run from the repository root: python3 fuzz/seeds.py"""

import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(__file__), "corpus")
KEY = b"\x37\xfa\x21\x3d"


def frame(first, payload, mask=True, length_form=None):
    n = len(payload)
    m = 0x80 if mask else 0
    if length_form == 16 or (length_form is None and 126 <= n <= 0xFFFF):
        head = bytes([first, m | 126]) + struct.pack(">H", n)
    elif length_form == 64 or (length_form is None and n > 0xFFFF):
        head = bytes([first, m | 127]) + struct.pack(">Q", n)
    else:
        head = bytes([first, m | n])
    if not mask:
        return head + payload
    return head + KEY + bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))


def deflate(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


def write(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


def frames(mask):
    side = "server" if mask else "client"
    t = f"decode_frames_{side}"
    f = lambda first, payload, **kw: frame(first, payload, mask=mask, **kw)
    knobs_plain, knobs_deflate = b"\x00", b"\x01"
    write(t, "hello", knobs_plain + f(0x81, b"Hello"))
    write(t, "fragmented-with-ping", knobs_plain + f(0x01, b"Hel") + f(0x89, b"p") + f(0x80, b"lo"))
    write(t, "binary-256", knobs_plain + f(0x82, bytes(range(256))))
    write(t, "len64-nonminimal", knobs_plain + f(0x82, b"abc", length_form=64))
    write(t, "close-1000", knobs_plain + f(0x88, b"\x03\xe8bye"))
    write(t, "close-empty", knobs_plain + f(0x88, b""))
    write(t, "utf8-split", knobs_plain + f(0x01, "κό".encode()[:3]) + f(0x80, "κό".encode()[3:]))
    write(t, "bad-utf8", knobs_plain + f(0x81, b"\xce\xba\xff"))
    write(t, "reserved-opcode", knobs_plain + f(0x83, b""))
    write(t, "compressed", knobs_deflate + f(0xC1, deflate(b"Hello Hello Hello")))
    data = deflate(b"fragmented compressed message " * 10)
    write(t, "compressed-fragments", knobs_deflate + f(0x41, data[:10]) + f(0x80, data[10:]))
    write(t, "byte-steps", b"\x10" + f(0x82, b"x" * 300))


REQUEST = (
    b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n"
)


def main():
    frames(True)
    frames(False)
    write("parse_request", "rfc", REQUEST + b"\r\n")
    write("parse_request", "deflate-offers", REQUEST + b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits=10\r\n\r\n")
    write("parse_request", "bad-version", REQUEST.replace(b"Version: 13", b"Version: 8") + b"\r\n")
    write("parse_request", "partial", REQUEST[:40])
    accept = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    write("parse_response", "rfc", accept + b"Sec-WebSocket-Protocol: chat\r\n\r\n")
    write("parse_response", "deflate", accept + b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits=10\r\n\r\n")
    write("parse_response", "forbidden", b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    write("inflate", "rfc-hello", bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00]))
    write("inflate", "stored-block", bytes([0x00, 0x05, 0x00, 0xFA, 0xFF]) + b"Hello" + b"\x00")
    write("inflate", "text", deflate(b"the quick brown fox " * 50))
    write("inflate", "zeros", deflate(bytes(200000)))
    session = [
        b'{"id":1,"op":"connect"}',
        b'{"id":2,"op":"subscribe","channel":"chat:lobby"}',
        b'{"id":3,"op":"publish","channel":"chat:lobby","data":{"text":"hi"},"idempotency_key":"k1"}',
        b'{"id":4,"op":"publish","channel":"chat:lobby","data":{"text":"hi"},"idempotency_key":"k1"}',
        b'{"id":5,"op":"presence","channel":"chat:lobby"}',
        b'{"id":6,"op":"history","channel":"chat:lobby","limit":10}',
        b'{"id":7,"op":"subscribe","channel":"news","recover":{"offset":3,"epoch":"x"}}',
        b'{"id":8,"op":"unsubscribe","channel":"chat:lobby"}',
        b'{"id":9,"op":"ping"}',
    ]
    write("session_requests", "whole-session", b"\n".join(session))
    write("session_requests", "bad-input", b"\n".join([
        b'{"id":1,"op":"teleport"}', b'not json', b'{"id":2}', b'\xff\xfe',
        b'{"id":3,"op":"publish","channel":"a","data":' + b"[" * 40 + b"]" * 40 + b'}',
        b'{"id":4,"op":"subscribe","channel":"' + b"x" * 300 + b'"}',
        b'{"id":5,"op":"connect","token":"a.b.c"}',
    ]))
    write("api_requests", "publish-and-read", b"\n".join([
        b'\x00{"channel":"news","data":{"headline":"hi"}}',
        b'\x01{"channels":["a","b"],"data":1}',
        b'\x02{"client":"c1"}',
        b'\x03news?limit=5',
        b'\x04news',
        b'\x06[{"id":1,"op":"subscribe","channel":"news"},{"id":2,"op":"ping"}]',
        b'\x06{"id":3,"op":"publish","channel":"news","data":2}',
    ]))
    write("api_requests", "bad-bodies", b"\n".join([
        b'\x00{"channel":', b'\x00[]', b'\x01{"channels":"a"}', b'\x02',
        b'\x03%zz', b'\x05not json', b'\x06{"id":"x"}', b'\x06' + b"[" * 200,
    ]))


if __name__ == "__main__":
    main()
