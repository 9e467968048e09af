"""FastAPI plumbing every service shares: error shape, correlation ids, health, readiness, metrics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo.errors import ConnectionFailure
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plenary_kit import metrics
from plenary_kit.auth import require_admin
from plenary_kit.errors import ApiError
from plenary_kit.logs import get_logger
from plenary_kit.runtime import Runtime

log = get_logger(__name__)

CORRELATION_HEADER = "X-Correlation-ID"
# MongoDB integers are at most 8 bytes: a larger number from a client must be a 422, not reach a query.
MAX_STORED_INT = 2**63 - 1

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def correlation_id() -> str:
    """The correlation id bound for the current request or consumed event."""
    bound = structlog.contextvars.get_contextvars().get("correlation_id")
    return str(bound) if bound else str(uuid.uuid4())


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI, service: str, ready_checks: Callable[[], Awaitable[dict[str, bool]]]) -> None:
    """Give `app` the contract's error bodies, request logging and the operational endpoints."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {}
        if exc.status == 429 and "retry_after_seconds" in exc.extra:
            headers["Retry-After"] = str(exc.extra["retry_after_seconds"])
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"field": _field(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        names = ", ".join(sorted({f["field"] for f in fields}))
        return JSONResponse(
            {"code": "validation_error", "message": f"Please check: {names}.", "fields": fields},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return JSONResponse(
            {"code": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(ConnectionFailure)
    async def database_unavailable(_: Request, exc: ConnectionFailure) -> JSONResponse:
        # Most likely nothing was done; either way the same request again is safe: an Idempotency-Key
        # gets the first answer back, and a registration once made answers already_registered.
        log.warning("database_unavailable", error=type(exc).__name__)
        return JSONResponse(
            {"code": "service_unavailable", "message": "We cannot reach our database just now; please try again."},
            status_code=503,
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", error=type(exc).__name__)
        return JSONResponse(
            {"code": "internal_error", "message": "Something went wrong on our side; please try again."},
            status_code=500,
        )

    app.add_middleware(RequestLog, service=service)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        checks = await ready_checks()
        down = sorted(name for name, ok in checks.items() if not ok)
        if down:
            return JSONResponse(
                {"code": "not_ready", "message": f"Unreachable: {', '.join(down)}.", "down": down},
                status_code=503,
            )
        return JSONResponse({"status": "ready", "service": service})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class RequestLog:
    """Binds the correlation id for the request, returns it in the reply, and measures and logs the request.

    Plain ASGI rather than Starlette's `BaseHTTPMiddleware`, which runs the rest of the app in a task of
    its own and passes the reply through a stream: a cost every request paid, at the doors most of all.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self._app = app
        self._service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        sent = Headers(scope=scope).get(CORRELATION_HEADER)
        correlation = (sent or str(uuid.uuid4()))[:64]
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(service=self._service, correlation_id=correlation)
        started = time.perf_counter()
        # Until the reply starts, an exception is what the request came to: a 500.
        status, elapsed = 500, 0.0

        async def send_with_correlation(message: Message) -> None:
            nonlocal status, elapsed
            if message["type"] == "http.response.start":
                status, elapsed = message["status"], time.perf_counter() - started
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                headers[CORRELATION_HEADER] = correlation
                message = {**message, "headers": headers.raw}
            await send(message)

        try:
            await self._app(scope, receive, send_with_correlation)
        finally:
            # Time to the reply's first byte, logged when it is complete (a stream, when it ends).
            elapsed = elapsed or time.perf_counter() - started
            method = scope["method"]
            path = getattr(scope.get("route"), "path", "unmatched")
            metrics.HTTP_REQUESTS.labels(self._service, method, path, str(status)).observe(elapsed)
            if path not in ("/healthz", "/readyz", "/metrics"):
                log.info("http_request", method=method, route=path, status=status, ms=round(elapsed * 1000, 1))


def service_app(runtime: Runtime, title: str, router: APIRouter) -> FastAPI:
    """The FastAPI app of one service: its routes, the shared plumbing, and the runtime's lifespan."""
    app = FastAPI(title=title, version="1.0.0", lifespan=runtime.lifespan)
    app.state.runtime = runtime
    app.state.admin_token = runtime.settings.admin_token()
    install(app, runtime.service, runtime.ready_checks)
    app.include_router(router)
    return app


async def get_admin_token(request: Request) -> str:
    return request.app.state.admin_token  # type: ignore[no-any-return]


AdminTokenDep = Annotated[str, Depends(get_admin_token)]
Authorization = Annotated[str | None, Header()]
ManageToken = Annotated[str | None, Header(alias="X-Manage-Token")]


async def organiser(admin_token: AdminTokenDep, authorization: Authorization = None) -> None:
    """Organiser-only routes: 401 without a valid organiser token."""
    require_admin(authorization, admin_token)


OrganiserDep = Depends(organiser)
