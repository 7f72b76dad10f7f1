"""HTTP for the scoring service: a Starlette app factory over an already-built ``ScoringService``.

Why so thin: every route hands off to a plain method (``score``, ``describe``, ``deploy``), so
behaviour is tested without HTTP and this file only parses, authenticates and serialises (orjson).
``/score`` runs on the event loop itself (no thread-pool hop: the work is ~100 µs of CPU); the
control API does blocking registry and warehouse calls, so it runs in the thread pool.
``X-Score-Latency-Ms`` carries the server-side handling time (the benchmark reads it). The
prediction row is appended to the local spool before the response is written (an acknowledged
prediction survives a kill of the process); the shadow offer runs after it: the answer does not
depend on it, so production latency does not include it (the client-side p99 in the benchmark
shows whatever it still costs the next request).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from fraudops.exceptions import FraudopsError, PermanentError
from fraudops.serving.deploy import (
    AuthError,
    authenticate,
    authorize,
    deploy,
    parse_deploy_request,
    parse_grants,
)
from fraudops.serving.registry_faults import RegistryUnavailable
from fraudops.serving.schema import RequestError, parse_score_request
from fraudops.serving.service import WAITING_FOR_REGISTRY, ModelFailure, NotReady, ScoringService

log = logging.getLogger(__name__)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


_UNPARSABLE = [{"field": "body", "reason": "could not be validated"}]
#: Largest request body on any route (a transaction is well under 2 KiB). The fast path counts it
#: itself; every ASGI path (other routes, a query string, an absolute-form URL, ``Expect:
#: 100-continue``, a pipelined ``/score``) goes through Starlette's ``RequestBodyLimitMiddleware``:
#: 413 from the Content-Length before any byte of the body is read, or once a chunked body passes it.
MAX_BODY = 1 << 20

#: One answer of the batch handler: (HTTP status, JSON body, that request's after-response work).
Answer = tuple[int, bytes, list[Callable[[], None]]]


class ScoringApp:
    """The ASGI app, plus what the uvicorn fast path (``fastpath.py``) calls directly.

    ``score_batch(items)`` answers ``(body, X-Request-Id)`` pairs in order; ``observe(status,
    seconds)`` counts one answered request in the metrics. The ASGI routes use the same two.
    """

    def __init__(
        self,
        asgi: ASGIApp,
        score_batch: Callable[[Sequence[tuple[bytes, str | None]]], list[Answer]],
        observe: Callable[[int, float], None],
    ) -> None:
        self.asgi = asgi
        self.score_batch = score_batch
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.asgi(scope, receive, send)


class ScoringRoutes:
    """The scoring service's HTTP surface: plain route methods over one :class:`ScoringService`.

    ``__call__`` is the ASGI app: a plain ``POST /score`` is handled as raw ASGI (no routing,
    Request or Response objects: about a third of the per-request overhead), everything else goes
    through Starlette's router (``routed``).
    """

    def __init__(
        self,
        service: ScoringService,
        *,
        deploy_token: str | None = None,
        deploy_tokens: str = "",
        manage_lifecycle: bool = True,
    ) -> None:
        self.service = service
        self.metrics = service.metrics
        self.grants = parse_grants(deploy_token, deploy_tokens)
        self.manage_lifecycle = manage_lifecycle
        self.routed = Starlette(
            routes=[
                Route("/score", self.score, methods=["POST"]),
                Route("/health", self.health, methods=["GET"]),
                Route("/version", self.version, methods=["GET"]),
                Route("/metrics", self.prometheus, methods=["GET"]),
                Route("/deploy", self.deploy_route, methods=["POST"]),
                Route("/openapi.json", self.openapi, methods=["GET"]),
            ],
            lifespan=self.lifespan,
        )

    def score_batch(self, items: Sequence[tuple[bytes, str | None]]) -> list[Answer]:
        """Parse each body, score the valid ones together (``score_many``), answer each in order."""
        answers: dict[int, Answer] = {}
        valid, where = [], []
        for k, (body, _) in enumerate(items):
            try:
                valid.append(parse_score_request(body))
                where.append(k)
            except RequestError as err:
                answers[k] = (err.status, orjson.dumps(err.body()), [])
            except Exception:  # a parser bug on hostile input fails this request, not its batch
                log.exception("parsing a /score body failed")
                answers[k] = (422, orjson.dumps({"error": "invalid request", "fields": _UNPARSABLE}), [])
        if valid:
            works: list[Callable[[], None]] = []
            results: list[dict[str, Any] | Exception]
            try:
                results = self.service.score_many(valid, [items[k][1] for k in where], works.append)
            except Exception as err:  # NotReady, or a bug: every request of this batch gets it
                if not isinstance(err, NotReady):
                    log.exception("score failed")
                results = [err] * len(valid)
            pending = iter(works)  # one per request that was scored (answered or ModelFailure)
            for k, result in zip(where, results, strict=True):
                if isinstance(result, dict):
                    answers[k] = (200, orjson.dumps(result), [next(pending)])
                elif isinstance(result, ModelFailure):
                    answers[k] = (503, orjson.dumps({"error": str(result)}), [next(pending)])
                elif isinstance(result, RequestError):  # e.g. an event time out of bounds
                    answers[k] = (result.status, orjson.dumps(result.body()), [])
                elif isinstance(result, NotReady):
                    answers[k] = (503, orjson.dumps({"error": str(result)}), [])
                else:  # never a stack trace to the client; always counted
                    answers[k] = (500, orjson.dumps({"error": type(result).__name__}), [])
        return [answers[k] for k in range(len(items))]

    def observe(self, status: int, elapsed: float) -> None:
        self.metrics.request_latency.observe(elapsed)
        self.metrics.requests.labels(str(status)).inc()

    def handle_score(
        self, body: bytes, request_id: str | None, after: list[Callable[[], None]] | None = None
    ) -> tuple[int, bytes, float]:
        """One request: (status, JSON body, seconds); with ``after``, its logging and mirroring
        are left in it, else they run before returning."""
        t0 = time.perf_counter()
        ((status, payload, works),) = self.score_batch([(body, request_id)])
        if after is not None:
            after.extend(works)
        else:
            run_after(works)
        elapsed = time.perf_counter() - t0
        self.observe(status, elapsed)
        return status, payload, elapsed

    async def score(self, request: Request) -> Response:  # the routed path (used by non-POST probes)
        status, payload, elapsed = self.handle_score(
            await request.body(), request.headers.get("x-request-id")
        )
        headers = {"X-Score-Latency-Ms": f"{elapsed * 1e3:.4f}"}
        return Response(payload, status_code=status, media_type="application/json", headers=headers)

    async def health(self, request: Request) -> Response:
        registry = self.service.registry_status()
        if self.service.ready:
            current = self.service.manager.current
            return _json(
                {
                    # Still 200 while degraded (the load balancer keeps the replica): it answers,
                    # with features from its local state until the shared state is back.
                    "status": "degraded" if self.service.router.outage["degraded"] else "ready",
                    "champion": None if current is None else current.version,
                    "registry": registry,
                }
            )
        waiting = registry["state"] == WAITING_FOR_REGISTRY
        return _json(
            {
                "status": WAITING_FOR_REGISTRY if waiting else "loading",
                "detail": self.service.watcher.last_error or self.service.rejected or None,
                "registry": registry,
            },
            503,
        )

    async def version(self, request: Request) -> Response:
        return _json(await run_in_threadpool(self.service.describe))

    async def openapi(self, request: Request) -> Response:
        from fraudops.serving.openapi import openapi_document

        return _json(openapi_document())

    async def prometheus(self, request: Request) -> Response:
        body, content_type = await run_in_threadpool(self.metrics.render)
        return Response(body, media_type=content_type)

    async def deploy_route(self, request: Request) -> Response:
        if not self.grants:
            return _json({"error": "control API disabled (no token configured)"}, 403)
        try:
            grant = authenticate(request.headers.get("authorization"), self.grants)
            req = parse_deploy_request(await request.body())
            authorize(grant, req.deployment_mode)
            result = await run_in_threadpool(deploy, self.service, req, actor=grant.who(req.actor))
        except AuthError as err:
            headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
            return _json({"error": str(err)}, err.status, headers)
        except RequestError as err:
            return _json(err.body(), err.status)
        except RegistryUnavailable as err:  # cannot act without MLflow: say so, try again later
            body = {"error": "model registry unreachable", "reason": err.reason, "detail": str(err)}
            return _json(body, 503, {"Retry-After": "10"})
        except PermanentError as err:
            return _json({"error": str(err)}, 409)
        except FraudopsError as err:
            return _json({"error": str(err)}, 503)
        return _json(result)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        if self.manage_lifecycle:
            self.service.start()
        try:
            yield
        finally:
            if self.manage_lifecycle:
                await run_in_threadpool(self.service.stop)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Fast path: POST /score as raw ASGI (no routing, Request or Response objects), about a
        # third of the per-request overhead; everything else goes through Starlette.
        if scope["type"] != "http" or scope["path"] != "/score" or scope["method"] != "POST":
            await self.routed(scope, receive, send)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        request_id = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                request_id = value.decode("latin-1")
        after: list[Callable[[], None]] = []
        status, payload, elapsed = self.handle_score(b"".join(chunks), request_id, after)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"x-score-latency-ms", f"{elapsed * 1e3:.4f}".encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        # The response is written (uvicorn hands it to the transport at once): now the prediction
        # row and the shadow offer, which the answer does not depend on.
        run_after(after)


def create_app(
    service: ScoringService,
    *,
    deploy_token: str | None = None,
    deploy_tokens: str = "",
    manage_lifecycle: bool = True,
) -> ScoringApp:
    """The ASGI app; starts/stops ``service`` with the server when ``manage_lifecycle``.

    Served by any ASGI server; ``fraudops serve`` runs it with ``fastpath.server_config``, where a
    plain ``POST /score`` skips the ASGI machinery (same handler, same answers) and requests that
    arrive together are scored together.
    """
    routes = ScoringRoutes(
        service, deploy_token=deploy_token, deploy_tokens=deploy_tokens, manage_lifecycle=manage_lifecycle
    )
    return ScoringApp(
        RequestBodyLimitMiddleware(routes, max_body_size=MAX_BODY), routes.score_batch, routes.observe
    )


def run_after(works: Iterable[Callable[[], None]]) -> None:
    """Run after-response work (prediction rows, shadow offers); a failure is logged, not raised."""
    for work in works:
        try:
            work()
        except Exception:
            log.exception("after-response work failed (prediction log / shadow offer)")
