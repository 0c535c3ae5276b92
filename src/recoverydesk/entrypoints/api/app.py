"""The HTTP API (FastAPI): health, metrics, canonical events, cases and the order 360."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recoverydesk.bootstrap import Desk
from recoverydesk.domain.errors import DeskError, PayloadTooLarge
from recoverydesk.entrypoints.api import decisions, kpis, routes, webhooks
from recoverydesk.entrypoints.errors import error_body, http_status
from recoverydesk.entrypoints.web.app import web_router
from recoverydesk.entrypoints.worker import WorkerThread

log = structlog.get_logger("recoverydesk.api")


def create_app(desk: Desk, *, run_worker: bool = False) -> FastAPI:
    """The API bound to one desk; ``run_worker`` also runs a job worker in this process."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = WorkerThread(desk) if run_worker else None
        if worker:
            worker.start()
        try:
            yield
        finally:
            if worker:
                worker.stop()

    app = FastAPI(
        title="recoverydesk",
        version="0.1.0",
        lifespan=lifespan,
        description="Order Recovery Desk API (see the contract in the README).",
    )
    app.state.desk = desk
    app.state.webhook_secrets = webhooks.SecretCache(desk)
    _add_error_handlers(app)
    _add_middleware(app, desk)
    app.include_router(routes.router)
    app.include_router(webhooks.router)
    app.include_router(decisions.router)
    app.include_router(kpis.router)
    app.include_router(web_router)
    _add_operations(app, desk)
    return app


def _add_operations(app: FastAPI, desk: Desk) -> None:
    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        with desk.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"status": "ok", "database": desk.engine.dialect.name}

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(desk.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DeskError)
    async def desk_error(_: Request, error: DeskError) -> JSONResponse:
        return JSONResponse(error_body(error.code, error.message), status_code=http_status(error))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid')}".lower()
        return JSONResponse(error_body("invalid_request", message), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            error.status_code, "http_error"
        )
        return JSONResponse(
            error_body(code, str(error.detail)),
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.error("unexpected error", error=repr(error), exc_info=error)
        return JSONResponse(
            error_body("internal_error", "the desk failed; see its logs"), status_code=500
        )


def _add_middleware(app: FastAPI, desk: Desk) -> None:
    app.add_middleware(Observe, desk=desk)


class Observe:
    """Per request: an id (``x-request-id``, kept if the caller sent one) bound to every log
    line, the body-size limit checked from ``content-length`` before the body is read, one log
    line and the request counter. Plain ASGI, so a request costs no extra task or stream."""

    def __init__(self, app: ASGIApp, desk: Desk) -> None:
        self.app = app
        self.desk = desk

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = headers.get("x-request-id") or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        limit = self.desk.settings.max_body_bytes
        if scope["path"] == "/desk/assess":  # the export upload checks max_upload_bytes itself
            limit = 2**63
        length = headers.get("content-length")
        started = time.perf_counter()
        try:
            if length and length.isdigit() and int(length) > limit:
                error = PayloadTooLarge(f"request body larger than {limit} bytes")
                answer = JSONResponse(error_body(error.code, error.message), 413)
                await answer(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            self._observe(scope, status, started)

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        log.info(
            "request",
            method=scope["method"],
            path=scope["path"],
            status=status,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        self.desk.metrics.http.labels(
            scope["method"], getattr(route, "path", "unmatched"), str(status)
        ).inc()
