"""The ``POST /score`` fast path over real sockets: HTTP/1.1 semantics stay uvicorn's.

The server is a real uvicorn (``fastpath.server_config``, as ``fraudops serve`` runs it). The app
is a small ASGI app whose ``/score`` handler echoes what it received and records, in order, when
its after-response work ran; ``GET /slow`` answers through ASGI after a delay, which is how a
pipelined ``/score`` is forced onto uvicorn's ordinary path. The real service over the fast path
is covered by ``test_service.py`` and ``test_schema.py``.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import orjson
import pytest
from serving_helpers import LiveServer

from fraudops.serving.app import ScoringApp
from fraudops.serving.fastpath import MAX_BATCH, MAX_BODY


class EchoApp:
    """``score_batch`` echoes; the ASGI side serves ``/slow`` and (pipelined) ``/score``."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.batches: list[int] = []
        self.observed: list[tuple[int, float]] = []
        self.scored = 0

    def score_batch(self, items: Any) -> list[tuple[int, bytes, list[Callable[[], None]]]]:
        if any(body == b"boom" for body, _ in items):
            raise RuntimeError("handler bug")
        self.batches.append(len(items))
        out = []
        for body, request_id in items:
            n, self.scored = self.scored, self.scored + 1
            self.events.append(f"score {n}")
            after: list[Callable[[], None]] = [functools.partial(self.events.append, f"after {n}")]
            out.append((200, orjson.dumps({"body": body.decode(), "request_id": request_id}), after))
        return out

    def observe(self, status: int, elapsed: float) -> None:
        self.observed.append((status, elapsed))

    async def asgi(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["path"] == "/slow":
            await asyncio.sleep(0.2)
            status, payload = 200, b'{"slow":true}'
        else:
            ((status, payload, after),) = self.score_batch([(body, None)])
            for work in after:
                work()
        headers = [(b"x-path", b"asgi"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


@pytest.fixture()
def echo() -> Iterator[tuple[EchoApp, LiveServer]]:
    app = EchoApp()
    server = LiveServer(ScoringApp(app.asgi, app.score_batch, app.observe), timeout_keep_alive=1)
    yield app, server
    server.close()


def post(body: bytes, path: str = "/score", extra: str = "", version: str = "1.1") -> bytes:
    return (
        f"POST {path} HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


class Conn:
    """A raw client socket that reads whole HTTP responses (Content-Length or close delimited)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError("closed before a response")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        size = int(headers["content-length"])
        while len(self.buf) < size:
            if not self._fill():
                raise ConnectionError("closed inside a body")
        body, self.buf = self.buf[:size], self.buf[size:]
        return status, headers, body

    def closed_by_server(self, within_s: float = 3.0) -> bool:
        self.sock.settimeout(within_s)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def test_keep_alive_requests_are_answered_in_one_write_each_with_after_work_after(echo: Any) -> None:
    app, server = echo
    conn = Conn(server.port)
    for i in range(3):
        conn.send(post(b'{"i":%d}' % i, extra=f"X-Request-Id: rid-{i}\r\n"))
        status, headers, body = conn.response()
        assert status == 200
        assert orjson.loads(body) == {"body": f'{{"i":{i}}}', "request_id": f"rid-{i}"}
        assert headers["content-type"] == "application/json"
        assert 0 < float(headers["x-score-latency-ms"]) < 1000
        assert "date" in headers and "x-path" not in headers  # uvicorn's defaults; not via ASGI
    assert app.events == ["score 0", "after 0", "score 1", "after 1", "score 2", "after 2"]
    assert app.batches == [1, 1, 1] and [status for status, _ in app.observed] == [200] * 3
    assert not conn.closed_by_server(0.3)
    conn.close()


def test_requests_read_together_are_scored_together_and_answered_in_order(echo: Any) -> None:
    app, server = echo
    conn = Conn(server.port)
    conn.send(b"".join(post(b"%d" % i, extra=f"X-Request-Id: r{i}\r\n") for i in range(40)))
    bodies = [orjson.loads(conn.response()[2]) for _ in range(40)]
    assert bodies == [{"body": str(i), "request_id": f"r{i}"} for i in range(40)]
    # One event-loop turn read them all: batches of at most MAX_BATCH, every answer written
    # before any of the batch's after-response work ran.
    assert sum(app.batches) == 40 and max(app.batches) <= MAX_BATCH and len(app.batches) <= 4
    first = app.batches[0]
    assert app.events[: 2 * first] == [f"score {i}" for i in range(first)] + [
        f"after {i}" for i in range(first)
    ]
    conn.close()


def test_pipelined_requests_keep_their_order_across_both_paths(echo: Any) -> None:
    _, server = echo
    conn = Conn(server.port)
    # /score first (fast), then /slow (ASGI, 0.2 s), then two /score that must wait for it.
    conn.send(post(b"a") + b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + post(b"b") + post(b"c"))
    answers = [conn.response() for _ in range(4)]
    assert [a[0] for a in answers] == [200] * 4
    assert [a[2] for a in answers] == [
        b'{"body":"a","request_id":null}',
        b'{"slow":true}',
        b'{"body":"b","request_id":null}',
        b'{"body":"c","request_id":null}',
    ]
    assert "x-path" not in answers[0][1] and answers[2][1]["x-path"] == "asgi"
    # Once the connection is idle again, /score is back on the fast path.
    conn.send(post(b"d"))
    status, headers, body = conn.response()
    assert status == 200 and body == b'{"body":"d","request_id":null}' and "x-path" not in headers
    conn.close()


def test_a_body_in_pieces_and_a_chunked_body(echo: Any) -> None:
    _, server = echo
    conn = Conn(server.port)
    body = b'{"transaction_id": "' + b"x" * 3000 + b'"}'
    raw = post(body)
    for k in range(0, len(raw), 700):  # headers and body split across TCP sends
        conn.send(raw[k : k + 700])
        time.sleep(0.01)
    assert orjson.loads(conn.response()[2])["body"] == body.decode()
    head = b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    conn.send(head + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert orjson.loads(conn.response()[2])["body"] == "abcde"
    conn.close()


def test_connection_close_and_http_1_0_close_after_the_answer(echo: Any) -> None:
    _, server = echo
    for request in (post(b"x", extra="Connection: close\r\n"), post(b"y", version="1.0")):
        conn = Conn(server.port)
        conn.send(request)
        status, headers, _ = conn.response()
        assert status == 200 and headers["connection"] == "close"
        assert conn.closed_by_server()
        conn.close()


def test_idle_connections_time_out_but_busy_pipelined_ones_do_not(echo: Any) -> None:
    _, server = echo  # keep-alive timeout 1 s
    conn = Conn(server.port)
    conn.send(post(b"1") + post(b"2") + post(b"3"))  # one read: three answers, one timer
    for _ in range(3):
        conn.response()
    for i in range(8):  # busy for 2.4 s: a leaked timer from the pipelined batch would close it
        time.sleep(0.3)
        conn.send(post(b"%d" % i))
        assert conn.response()[0] == 200
    assert conn.closed_by_server(3.0)  # then idle: closed by the 1 s timer
    conn.close()


def test_oversized_body_gets_413_and_a_handler_bug_a_500(echo: Any) -> None:
    app, server = echo
    conn = Conn(server.port)
    conn.send(post(b"boom"))
    status, _, body = conn.response()
    assert status == 500 and orjson.loads(body) == {"error": "internal error"}
    conn.send(post(b"fine"))  # the connection survives a handler bug
    assert conn.response()[0] == 200
    conn.send(post(b"x" * (MAX_BODY + 1)))
    status, headers, body = conn.response()
    assert status == 413 and headers["connection"] == "close"
    assert conn.closed_by_server()
    conn.close()
    assert all("boom" not in e for e in app.events)


def test_other_paths_methods_and_expect_continue_go_through_asgi(echo: Any) -> None:
    _, server = echo
    conn = Conn(server.port)
    conn.send(post(b"q", path="/score?debug=1"))
    assert conn.response()[1]["x-path"] == "asgi"
    conn.send(post(b"e", extra="Expect: 100-continue\r\n"))
    while b"\r\n\r\n" not in conn.buf:
        conn._fill()
    if conn.buf.startswith(b"HTTP/1.1 100"):
        conn.buf = conn.buf.split(b"\r\n\r\n", 1)[1]
    status, headers, body = conn.response()
    assert status == 200 and headers["x-path"] == "asgi" and orjson.loads(body)["body"] == "e"
    conn.close()
