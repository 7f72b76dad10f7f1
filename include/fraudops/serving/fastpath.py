"""The HTTP fast path of ``POST /score``: uvicorn's httptools protocol, scoring what arrived together.

Why: behind ASGI, every request costs uvicorn a scope, a request/response cycle object, an
``asyncio.Task``, two ``receive``/``send`` awaits with message dicts, per-header regex checks and two
socket writes (head, then body). A transaction score is ~100 µs of CPU, so that machinery is a
large share of it. Here a plain ``POST /score`` whose body is complete is put on a list, and one
callback per event-loop turn (``loop.call_soon``, which runs after the turn's reads) scores the
whole list with ``ScoringApp.score_batch``: features one request after another in arrival order,
one ONNX call for all of them. The prediction rows are appended to the local spool while the batch
is scored, before its answers are written (acknowledged means spooled); each answer is one socket
write; the shadow offers run after every answer of the batch is on the wire.

Nothing waits to form a batch: a lone request is answered in the same turn it was read, so at low
load this is the one-request path, and under load a turn holds as many requests as arrived while
the previous one was being served (``fraudops_score_batch_size`` shows it; ``make bench`` compares
this, plain ASGI and ``mlflow models serve``). ``X-Score-Latency-Ms`` and the request-latency
histogram count from the moment the request was complete to its write, so time spent waiting for
batch-mates is included.

Everything else goes through uvicorn unchanged: other routes and methods, a query string,
``Expect: 100-continue``, upgrades, and any ``/score`` that arrives on a connection while an
earlier request there is still being answered by the ASGI app. Before a request on that ASGI path
starts, the pending list is answered, so responses on a connection keep request order under
pipelining. Keep-alive, ``Connection: close``, HTTP/1.0 and the keep-alive timer follow uvicorn's
own rules (``on_response_complete``). Not logged by uvicorn's access log (the service runs with it
off). A body over ``MAX_BODY`` gets 413 and the connection is closed.

Built on uvicorn internals (``HttpToolsProtocol``'s parser callbacks, ``cycle``, ``pipeline``,
``flow`` and ``on_response_complete``), which is why uvicorn is pinned exactly;
``tests/include/serving/test_fastpath.py`` checks this behaviour over real sockets, so an upgrade
that changes them fails there.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from fraudops.serving.app import MAX_BODY, run_after

if TYPE_CHECKING:
    from collections.abc import Callable

    from fraudops.serving.app import ScoringApp

log = logging.getLogger(__name__)

__all__ = [
    "MAX_BATCH",
    "MAX_BODY",
    "HeadLimitedProtocol",
    "score_protocol",
    "server_config",
    "server_options",
]

#: Request head limits. uvicorn's httptools protocol has none (``h11_max_incomplete_event_size``
#: exists for h11 only, and answers 400), and httptools buffers a header until it is complete, so
#: without them one endless header grows the process without bound. Past them: 431 (headers) or
#: 414 (URL), ``Connection: close``.
MAX_HEADERS = 100
MAX_HEAD_BYTES = 32 * 1024
MAX_URL = 8 * 1024
#: Requests per ``score_batch`` call: a turn with more is answered in slices of this size, so the
#: first answers are written before the rest are scored.
MAX_BATCH = 32
_INTERNAL_ERROR = (500, b'{"error":"internal error"}')


class _HeadTooLarge(Exception):
    """Raised in a parser callback: httptools stops parsing and uvicorn calls send_400_response."""


class HeadLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with caps on the URL, the header count and the head's bytes.

    Complete headers are counted in ``on_header``; a header still incomplete at the end of a read
    (httptools buffers it) is caught by counting every read that begins and ends inside the head.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_error: tuple[int, bytes] | None = None
        self.in_head = False
        self.head_bytes = 0

    def _refuse_head(self, status: int, reason: bytes) -> None:
        self.head_error = (status, b'{"error":"%s"}' % reason)
        raise _HeadTooLarge

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head, self.head_bytes = True, 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_URL:
            self._refuse_head(414, b"request URL longer than %d bytes" % MAX_URL)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self.head_bytes += len(name) + len(value) + 4
        if len(self.headers) > MAX_HEADERS:
            self._refuse_head(431, b"more than %d request headers" % MAX_HEADERS)
        if self.head_bytes > MAX_HEAD_BYTES:
            self._refuse_head(431, b"request headers larger than %d bytes" % MAX_HEAD_BYTES)

    def on_headers_complete(self) -> None:
        self.in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        inside = self.in_head
        super().data_received(data)
        if inside and self.in_head and self.head_error is None and not self.transport.is_closing():
            self.head_bytes += len(data)  # the whole read was head: a header still being received
            if self.head_bytes > MAX_HEAD_BYTES:
                self.head_error = (431, b'{"error":"request headers larger than %d bytes"}' % MAX_HEAD_BYTES)
                self.send_400_response("")

    def send_400_response(self, msg: str) -> None:
        if self.head_error is None:
            super().send_400_response(msg)
            return
        status, payload = self.head_error
        out = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            out += (name, b": ", value, b"\r\n")
        out.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(payload))
        out += (b"connection: close\r\n\r\n", payload)
        self.transport.write(b"".join(out))
        self.transport.close()
        self.in_head = False


def score_protocol(app: ScoringApp, path: bytes = b"/score") -> type[HttpToolsProtocol]:
    """A uvicorn ``http=`` protocol class answering ``POST {path}`` with ``app.score_batch``."""
    # (protocol, body, X-Request-Id, keep-alive, perf_counter when complete), in arrival order.
    pending: list[tuple[ScoreFastPath, bytes, str | None, bool, float]] = []

    def answer_pending() -> None:
        while pending:
            batch = pending[:MAX_BATCH]
            del pending[:MAX_BATCH]
            try:
                answers = app.score_batch([(body, rid) for _, body, rid, _, _ in batch])
            except Exception:  # score_batch answers its own errors; this is a bug guard
                log.exception("score handler failed")
                answers = [(*_INTERNAL_ERROR, [])] * len(batch)
            works: list[Callable[[], None]] = []
            for (proto, _, _, keep_alive, t0), (status, payload, after) in zip(batch, answers, strict=True):
                works.extend(after)
                try:
                    proto.write_answer(status, payload, time.perf_counter() - t0, keep_alive)
                except Exception:  # one broken connection must not leave its batch-mates waiting
                    log.exception("writing a /score answer failed")
                    proto.transport.close()
            # Every answer of the batch is written (its prediction rows already spooled): now the
            # shadow offers.
            run_after(works)

    class ScoreFastPath(HeadLimitedProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.fast_body: list[bytes] | None = None  # not None while a fast request is read
            self.fast_size = 0

        def on_headers_complete(self) -> None:
            self.in_head = False  # the head limits stop counting (see HeadLimitedProtocol)
            if (
                self.url == path
                and self.parser.get_method() == b"POST"
                and not self.expect_100_continue
                and not self.parser.should_upgrade()
                and (self.cycle is None or self.cycle.response_complete)
                and not self.pipeline
            ):
                self.fast_body, self.fast_size = [], 0
                return
            self.fast_body = None
            if pending:  # requests read before this one are answered before it starts
                answer_pending()
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if self.fast_body is None:
                super().on_body(body)
                return
            self.fast_size += len(body)
            if self.fast_size <= MAX_BODY:  # past it, count (for the 413) but do not keep
                self.fast_body.append(body)

        def on_message_complete(self) -> None:
            body = self.fast_body
            if body is None:
                super().on_message_complete()
                return
            self.fast_body = None
            keep_alive = self.parser.should_keep_alive()
            if self.fast_size > MAX_BODY:
                answer_pending()
                self.write_answer(413, b'{"error":"request body too large"}', 0.0, False)
                return
            request_id = None
            for name, value in self.headers:
                if name == b"x-request-id":
                    request_id = value.decode("latin-1")
            pending.append((self, b"".join(body), request_id, keep_alive, time.perf_counter()))
            if len(pending) == 1:
                self.loop.call_soon(answer_pending)

        def write_answer(self, status: int, payload: bytes, elapsed: float, keep_alive: bool) -> None:
            app.observe(status, elapsed)
            if self.transport.is_closing():  # the client left; the request still counts
                return
            out = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                out += (name, b": ", value, b"\r\n")
            out.append(
                b"content-type: application/json\r\ncontent-length: %d\r\nx-score-latency-ms: %.4f\r\n"
                % (len(payload), elapsed * 1e3)
            )
            if not keep_alive:
                out.append(b"connection: close\r\n")
            out += (b"\r\n", payload)
            self.transport.write(b"".join(out))
            if not keep_alive:
                self.transport.close()
            self.on_response_complete()  # request count, keep-alive timer, pipelined requests
            if self.flow.write_paused:  # the client is not reading its answers: stop reading
                self.flow.pause_reading()

        def shutdown(self) -> None:  # graceful stop: what was read is answered first
            if pending:
                answer_pending()
            super().shutdown()

        def resume_writing(self) -> None:
            super().resume_writing()
            if self.fast_body is None and (self.cycle is None or self.cycle.response_complete):
                self.flow.resume_reading()

    return ScoreFastPath


def server_options(
    app: Any, *, host: str, port: int, log_level: str = "warning", fast_path: bool = True
) -> dict[str, Any]:
    """The uvicorn settings ``fraudops serve`` runs ``app`` with (``uvicorn.run(app, **these)``).

    ``app`` is a ``ScoringApp``: its ``score_batch`` backs the fast path. One worker (the online
    feature state lives in this process), uvloop, no access log. ``fast_path=False``: uvicorn's own
    httptools protocol (with the same head limits), every request through ASGI.
    """
    return {
        "host": host,
        "port": port,
        "workers": 1,
        "loop": "uvloop",
        "http": score_protocol(app) if fast_path else HeadLimitedProtocol,
        "access_log": False,
        "log_level": log_level,
    }


def server_config(app: Any, **options: Any) -> Any:
    """A ``uvicorn.Config`` with ``server_options`` (the tests' live servers run one in a thread)."""
    import uvicorn

    return uvicorn.Config(app, **server_options(app, **options))
