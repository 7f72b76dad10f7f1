"""The HTTP fast path of ``POST /score``: uvicorn's httptools protocol, answering in the parser callback.

Why: behind ASGI, every request costs uvicorn a scope, a request/response cycle object, an
``asyncio.Task``, two ``receive``/``send`` awaits with message dicts, per-header regex checks and two
socket writes (head, then body). A transaction score is ~100 µs of CPU, so that machinery is a
large share of it (``make bench`` runs both ways side by side: see the README). Here a plain
``POST /score`` is answered synchronously when its body is complete, as one socket write, with the
same handler the ASGI app uses (``ScoringApp.handle_score``: same parsing, errors, metrics and
``X-Score-Latency-Ms``), and the prediction row and shadow offer still run after the write.

Everything else goes through uvicorn unchanged: other routes and methods, a query string,
``Expect: 100-continue``, upgrades, and any ``/score`` that arrives on a connection while an
earlier request there is still being answered by the ASGI app (so responses keep request order
under pipelining). Keep-alive, ``Connection: close``, HTTP/1.0 and the keep-alive timer follow
uvicorn's own rules (``on_response_complete``). Not logged by uvicorn's access log (the service
runs with it off). A body over ``MAX_BODY`` gets 413 and the connection is closed.

Built on uvicorn internals (``HttpToolsProtocol``'s parser callbacks, ``cycle``, ``pipeline``,
``flow`` and ``on_response_complete``), which is why uvicorn is pinned exactly;
``tests/include/serving/test_fastpath.py`` checks this behaviour over real sockets, so an upgrade
that changes them fails there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger(__name__)

#: (body, X-Request-Id, list to append after-response work to) -> (status, JSON body, seconds).
ScoreHandler = Callable[[bytes, "str | None", "list[Callable[[], None]]"], "tuple[int, bytes, float]"]

#: A transaction is well under 2 KiB; anything this large is not one.
MAX_BODY = 1 << 20


def score_protocol(handler: ScoreHandler, path: bytes = b"/score") -> type[HttpToolsProtocol]:
    """A uvicorn ``http=`` protocol class answering ``POST {path}`` with ``handler``."""

    class ScoreFastPath(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.fast_body: list[bytes] | None = None  # not None while a fast request is read
            self.fast_size = 0

        def on_headers_complete(self) -> None:
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
            if self.transport.is_closing():
                return
            keep_alive = self.parser.should_keep_alive()
            after: list[Callable[[], None]] = []
            if self.fast_size > MAX_BODY:
                status, payload, elapsed = 413, b'{"error":"request body too large"}', 0.0
                keep_alive = False
            else:
                request_id = None
                for name, value in self.headers:
                    if name == b"x-request-id":
                        request_id = value.decode("latin-1")
                try:
                    status, payload, elapsed = handler(b"".join(body), request_id, after)
                except Exception:  # the handler answers its own errors; this is a bug guard
                    log.exception("score handler failed")
                    status, payload, elapsed = 500, b'{"error":"internal error"}', 0.0
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
            # The response is written: now the prediction row and the shadow offer.
            for work in after:
                try:
                    work()
                except Exception:
                    log.exception("after-response work failed (prediction log / shadow offer)")
            self.on_response_complete()  # request count, keep-alive timer, pipelined requests
            if self.flow.write_paused:  # the client is not reading its answers: stop reading
                self.flow.pause_reading()

        def resume_writing(self) -> None:
            super().resume_writing()
            if self.fast_body is None and (self.cycle is None or self.cycle.response_complete):
                self.flow.resume_reading()

    return ScoreFastPath


def server_config(
    app: Any, *, host: str, port: int, log_level: str = "warning", fast_path: bool = True
) -> Any:
    """The uvicorn config ``fraudops serve`` runs with (the tests' live servers use it too).

    ``app`` is a ``ScoringApp``: its ``handle_score`` backs the fast path. One worker (the online
    feature state lives in this process), uvloop, no access log. ``fast_path=False``: uvicorn's own
    httptools protocol, every request through ASGI.
    """
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=1,
        loop="uvloop",
        http=score_protocol(app.handle_score) if fast_path else "httptools",
        access_log=False,
        log_level=log_level,
    )
