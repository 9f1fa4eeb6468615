"""Python `websockets` peer for tether's interop tests.

client mode: runs every scenario against a tether server and prints one
`ok <scenario>` line each; exits non-zero at the first failure.
server mode: an echo server; prints `listening <port>` once ready. A text message
`close <code>` makes it close with that code.
"""

import argparse
import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

BIG = 16 << 20


def say(*args):
    print(*args, flush=True)


async def echo_roundtrip(ws, message):
    await ws.send(message)
    got = await ws.recv()
    assert got == message, f"echo differs ({len(got)} vs {len(message)} bytes)"


async def client(base, small_base):
    for compression in ("deflate", None):
        tag = "compressed" if compression else "plain"
        async with connect(base + "/echo", compression=compression, max_size=None) as ws:
            negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
            assert bool(negotiated) == bool(compression), f"extensions: {negotiated!r}"
            await echo_roundtrip(ws, "héllo wörld ✓")
            await echo_roundtrip(ws, bytes(range(256)))
            say(f"ok text and binary ({tag})")
            big = bytes((i * 7919) & 0xFF for i in range(BIG))
            await echo_roundtrip(ws, big)
            say(f"ok 16 MiB message ({tag})")
            await ws.send(["frag", "men", "ted"])
            assert await ws.recv() == "fragmented"
            await ws.send([b"\x00\x01", b"\x02"])
            assert await ws.recv() == b"\x00\x01\x02"
            say(f"ok fragmented messages ({tag})")
            latency = await (await ws.ping(b"payload"))
            assert latency >= 0
            say(f"ok ping answered with pong ({tag})")
            await ws.close(code=4000, reason="client bye")
            assert ws.close_code == 4000, ws.close_code
            say(f"ok client close 4000 echoed ({tag})")

    async with connect(base + "/close/4001") as ws:
        try:
            await ws.recv()
            raise AssertionError("expected the server to close")
        except ConnectionClosed:
            pass
        assert ws.close_code == 4001, ws.close_code
        say("ok server close 4001 received")

    async with connect(small_base + "/echo", compression=None) as ws:
        await ws.send(b"x" * 4096)
        try:
            await ws.recv()
            raise AssertionError("expected a 1009 close")
        except ConnectionClosed:
            pass
        assert ws.close_code == 1009, ws.close_code
        say("ok oversize message closed with 1009")


async def server(port, compress):
    async def handler(ws):
        async for message in ws:
            if isinstance(message, str) and message.startswith("close "):
                await ws.close(code=int(message.split()[1]), reason="server bye")
                return
            await ws.send(message)

    compression = "deflate" if compress else None
    async with serve(handler, "127.0.0.1", port, compression=compression, max_size=20 << 20) as srv:
        say(f"listening {srv.sockets[0].getsockname()[1]}")
        await asyncio.Future()


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("client")
    c.add_argument("url")
    c.add_argument("small_url", help="server with a 1 KiB message limit")
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--compress", action="store_true")
    args = parser.parse_args()
    if args.mode == "client":
        asyncio.run(asyncio.wait_for(client(args.url, args.small_url), 120))
    else:
        asyncio.run(server(args.port, args.compress))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        say(f"FAILED: {e}")
        sys.exit(1)
