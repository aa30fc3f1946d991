"""Pure ASGI middleware: request id in and out, in-flight gauge and limit, latency by route template
(and in a Server-Timing header), one log line per request, and face3d_errors_total for every problem
answer whichever layer raised it."""

from __future__ import annotations

import json
import logging
import re
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from face3d.service import logs, metrics
from face3d.service.api.problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from face3d.service.api.problems import problem_response
from face3d.service.errors import Problem

log = logging.getLogger("face3d.api")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_QUIET_ROUTES = ("/livez", "/readyz", "/metrics")
MAX_HEADER_BYTES = 32 * 1024
"""Request headers beyond this are refused with 431 (tokens are at most 8 KB: service/api/auth.py)."""


class RequestContext:
    """Pure ASGI middleware: request id in and out, in-flight gauge, latency by route template.

    Pure ASGI rather than ``BaseHTTPMiddleware`` so the upload stream reaches the route untouched.
    The route template (``/v1/results/{result_id}/{name}``) keeps the metric's label set bounded.
    More than ``max_inflight`` requests at once (health and metrics not counted, so probes and
    scrapes always get through) are answered 503 + Retry-After before any routing or body read;
    request headers over ``MAX_HEADER_BYTES`` are answered 431 (the HTTP parser's own limit applies
    only to heads that arrive in pieces).
    """

    def __init__(self, app: ASGIApp, max_inflight: int = 1_000_000) -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else logs.new_request_id()
        token = logs.request_id.set(request_id)
        status = 500
        start = time.perf_counter()

        problem = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, problem
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers.append("X-Request-ID", request_id)
                # Time spent in the server until the answer starts (W3C Server-Timing).
                headers.append("Server-Timing", f"app;dur={(time.perf_counter() - start) * 1e3:.1f}")
                problem = headers.get("content-type", "").startswith(PROBLEM_MEDIA_TYPE)
            elif message["type"] == "http.response.body" and problem:
                problem = False
                count_problem(message.get("body", b""))
            await send(message)

        counted = scope["path"] not in _QUIET_ROUTES
        app = self.app
        if sum(len(name) + len(value) for name, value in scope["headers"]) > MAX_HEADER_BYTES:
            app = problem_response(
                Problem("headers-too-large", f"request headers over {MAX_HEADER_BYTES} bytes"), scope["path"]
            )
        elif counted and self.inflight >= self.max_inflight:
            app = problem_response(
                Problem("overloaded", "too many requests in progress; retry", headers={"Retry-After": "1"}),
                scope["path"],
            )
        self.inflight += counted
        metrics.INFLIGHT.inc()
        try:
            await app(scope, receive, send_with_id)
        finally:
            self.inflight -= counted
            metrics.INFLIGHT.dec()
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - start
            metrics.REQUEST_DURATION.labels(route=template, status=str(status)).observe(elapsed)
            if template not in _QUIET_ROUTES:
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": template,
                        "status": status,
                        "ms": round(elapsed * 1e3, 1),
                    },
                )
            logs.request_id.reset(token)


def count_problem(body: bytes) -> None:
    """face3d_errors_total{type}: every problem answer is counted here, whichever layer raised it."""
    try:
        slug = str(json.loads(body)["type"]).rsplit("/", 1)[-1]
    except (ValueError, KeyError, TypeError):
        slug = "unknown"
    metrics.ERRORS.labels(type=slug).inc()
