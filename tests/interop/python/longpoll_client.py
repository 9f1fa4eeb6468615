"""A whole long-polling session driven by Python's standard HTTP client, as
any back end or script without a WebSocket library would: open with a
subscription, poll, publish through the session's command POSTs, read
presence and history, drop one poll answer on purpose and fetch it again by
its cursor, close, and find the session gone.

Reads the server's base URL (http://host:port) on stdin; prints what it saw
as JSON and exits non-zero on the first surprise."""

import json
import sys
import urllib.error
import urllib.request

BASE = sys.stdin.read().strip()


def call(method, path, body=None, expect=200):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    assert status == expect, f"{method} {path}: {status} {text!r}"
    return json.loads(text) if text else None


def poll(session, cursor):
    return call("GET", f"/connection/longpoll/{session}?cursor={cursor}")


def main():
    opened = call("POST", "/connection/longpoll",
                  [{"id": 1, "op": "subscribe", "channel": "py:news"}])
    session = opened["session"]
    assert len(session) == 32, session

    answer = poll(session, 0)
    cursor = answer["cursor"]
    (reply,) = answer["messages"]
    assert reply["id"] == 1 and reply["result"]["offset"] == 0, reply

    commands = [
        {"id": 2, "op": "publish", "channel": "py:news", "data": {"n": 1}},
        {"id": 3, "op": "presence", "channel": "py:news"},
        {"id": 4, "op": "history", "channel": "py:news"},
    ]
    assert call("POST", f"/connection/session/{session}", commands, expect=202) == {"accepted": 3}

    received = []
    while len([m for m in received if "id" in m]) < 3:
        answer = poll(session, cursor)
        cursor = answer["cursor"]
        received.extend(answer["messages"])
    replies = {m["id"]: m for m in received if "id" in m}
    publications = [m for m in received if m.get("push") == "publication"]
    assert replies[2]["result"]["offset"] == 1, replies[2]
    assert [c["client"] for c in replies[3]["result"]["clients"]] == [opened["client"]], replies[3]
    assert [p["offset"] for p in replies[4]["result"]["publications"]] == [1], replies[4]
    assert [p["data"] for p in publications] == [{"n": 1}], publications

    # An answer lost on the way: read, thrown away, fetched again by the
    # cursor it followed.
    call("POST", "/api/publish", {"channel": "py:news", "data": {"n": 2}})
    lost = poll(session, cursor)
    again = poll(session, cursor)
    assert lost == again and again["messages"][0]["data"] == {"n": 2}, (lost, again)
    cursor = again["cursor"]

    call("DELETE", f"/connection/session/{session}", expect=204)
    gone = call("GET", f"/connection/longpoll/{session}?cursor={cursor}", expect=404)
    assert gone["error"]["code"] == 113, gone
    # The subscribe reply, the three replies and the publication, the refetched one.
    print(json.dumps({"session": session, "messages": 1 + len(received) + len(again["messages"])}))


main()
