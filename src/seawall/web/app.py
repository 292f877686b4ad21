"""The application factory: one FastAPI app serving the JSON API, the console and health endpoints."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from swagger_ui_bundle import swagger_ui_path

import seawall
from seawall import migrate
from seawall.auth.permissions import Principal
from seawall.config import Settings, get_settings
from seawall.db import make_engine, make_sessionmaker
from seawall.fetch import FetchBusy
from seawall.matching.indexes import MatchIndexes
from seawall.media.budget import DecodeBusy
from seawall.web.csrf import csrf_token, persist_anon_cookie
from seawall.web.deps import LoginRequired, ops_principal, require_ops
from seawall.web.errors import BAD_INPUT, bad_input
from seawall.web.limits import HMA_PREFIXES, BodyLimits
from seawall.web.observability import Metrics, ObservabilityMiddleware
from seawall.web.security import SecurityHeaders, add_security_headers

log = logging.getLogger(__name__)
WEB_DIR = Path(__file__).parent


@dataclass
class ReadinessCheck:
    """One named readiness probe; ``probe`` returns (ready, details) and may raise (= not ready)."""

    name: str
    probe: Callable[[FastAPI], tuple[bool, dict[str, Any]]]


@dataclass
class Readiness:
    checks: list[ReadinessCheck] = field(default_factory=list)

    def add(self, name: str, probe: Callable[[FastAPI], tuple[bool, dict[str, Any]]]) -> None:
        self.checks.append(ReadinessCheck(name, probe))

    def run(self, app: FastAPI) -> tuple[bool, dict[str, Any]]:
        results: dict[str, Any] = {}
        all_ready = True
        for check in self.checks:
            try:
                ready, details = check.probe(app)
            except Exception as exc:  # a probe that fails means not ready, never a 500
                ready, details = False, {"error": f"{type(exc).__name__}: {exc}"}
            results[check.name] = {"ready": ready, **details}
            all_ready = all_ready and ready
        return all_ready, results


def _database_probe(app: FastAPI) -> tuple[bool, dict[str, Any]]:
    with app.state.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        current = migrate.current_revision(connection)
    head = migrate.head_revision()
    return current == head, {"revision": current, "head": head}


def _index_probe(app: FastAPI) -> tuple[bool, dict[str, Any]]:
    indexes: MatchIndexes = app.state.match_indexes
    with app.state.sessionmaker() as session:
        lists = indexes.status(session)
    age = time.monotonic() - indexes.last_refresh if indexes.last_refresh else None
    # Ready once loaded and recently refreshed: a stale matcher would miss new entries.
    ready = indexes.last_refresh > 0 and age is not None and age < 5 and indexes.last_error is None
    details: dict[str, Any] = {"lists": lists, "seconds_since_refresh": round(age, 3) if age is not None else None}
    if indexes.last_error:
        details["error"] = indexes.last_error
    return ready, details


def wants_html(request: Request) -> bool:
    if request.url.path.startswith("/v1/") or request.url.path in ("/healthz", "/readyz", "/metrics"):
        return False
    return "text/html" in request.headers.get("accept", "")


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """Render a console page with the context every page needs (user, CSRF token, version)."""
    templates: Jinja2Templates = request.app.state.templates
    principal = getattr(request.state, "principal", None)
    context.setdefault("user", principal if principal is not None and principal.kind == "user" else None)
    context["csrf_token"] = csrf_token(request)
    context["version"] = seawall.__version__
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    persist_anon_cookie(request, response)
    return response


_ERROR_TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Too large",
    422: "Invalid input",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Unavailable",
}


def error_response(request: Request, status: int, detail: Any, headers: dict[str, str] | None = None) -> Response:
    if wants_html(request):
        return render(
            request,
            "error.html",
            status_code=status,
            status=status,
            title=_ERROR_TITLES.get(status, "Error"),
            detail=detail if isinstance(detail, str) else None,
        )
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={target}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers any error while parsing a body "There was an error parsing the body": say which.
        known = bad_input(exc.__cause__) if exc.status_code == 400 and exc.__cause__ is not None else None
        detail = known[1] if known is not None else exc.detail
        if request.url.path.startswith(HMA_PREFIXES):  # no HMA route matched (404, 405): HMA's shape still
            return JSONResponse(
                {"message": str(detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
            )
        return error_response(request, exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        if wants_html(request):
            return error_response(request, 422, "Some fields are missing or invalid.")
        return JSONResponse({"detail": jsonable_errors(exc)}, status_code=422)

    async def _bad_input(request: Request, exc: Exception) -> Response:
        status, message = bad_input(exc) or (400, "invalid request")
        return error_response(request, status, message)

    for kind, _status, _message in BAD_INPUT:
        app.add_exception_handler(kind, _bad_input)

    @app.exception_handler(DecodeBusy)
    async def _decode_busy(request: Request, exc: DecodeBusy) -> Response:
        return error_response(request, 503, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(FetchBusy)
    async def _fetch_busy(request: Request, exc: FetchBusy) -> Response:
        return error_response(request, 429, str(exc), {"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        response = error_response(request, 500, "internal error; the request id in the logs identifies it")
        return add_security_headers(response)  # answered from outside every middleware


def jsonable_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]


def create_app(settings: Settings | None = None, engine: Engine | None = None, *, serving: bool = False) -> FastAPI:
    """The application. ``serving``: it is the process's one app, for its whole life (``seawall serve``)."""
    settings = settings or get_settings()
    if engine is None:
        if settings.effective_database_url.startswith("sqlite"):
            settings.ensure_home()
        engine = make_engine(settings.effective_database_url)
    sessions = make_sessionmaker(engine)
    reads = make_sessionmaker(engine, writes=False)
    indexes = MatchIndexes(reads, refresh_seconds=settings.index_refresh_seconds, folder=settings.home / "index")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            indexes.start()
        except Exception:  # a database that is not ready yet: /readyz says so, the thread retries
            log.exception("could not load the match indexes at start-up")
            indexes.start_background()
        if serving:
            # What is loaded by now (the search kernels too, once warmed up) lives as long as the
            # process. Set aside from the collector, a full collection walks only what came after:
            # otherwise ~100 ms pauses every few seconds under load (objects of requests in flight
            # get promoted and trigger them), felt by every request in flight at the time.
            try:
                indexes.warm_up()
            except Exception:  # only a head start: the first request would load the kernels anyway
                log.exception("warming the match indexes up failed")
            gc.collect()
            gc.freeze()
        yield
        indexes.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="Seawall",
        version=seawall.__version__,
        description="Hash, match, review, take down and report CSAM. Partner API under /v1.",
        docs_url=None,  # our own /docs page (web/views.py): FastAPI's loads a CDN and runs inline script
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = sessions
    app.state.read_sessionmaker = reads
    app.state.match_indexes = indexes
    app.state.templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))
    from seawall.redact import redact_url

    app.state.templates.env.filters["redact_url"] = redact_url
    app.state.readiness = Readiness()
    app.state.readiness.add("database", _database_probe)
    app.state.readiness.add("indexes", _index_probe)
    metrics = Metrics()
    app.state.metrics = metrics
    from seawall.scan.metrics import register as register_scan_metrics

    register_scan_metrics(metrics.registry, reads)

    _install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=str(WEB_DIR / "static")), name="static")
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/healthz", tags=["health"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        # async: nothing here waits, so no hop to the thread pool (the floor the API is measured against)
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="The process can serve: database reachable, schema current")
    def readyz(caller: Principal | None = Depends(ops_principal)) -> JSONResponse:
        ready, checks = app.state.readiness.run(app)
        # The checks name lists and revisions: for the metrics token or an 'ops' credential only, and
        # a key limited to some lists sees only those.
        if caller is None or not caller.can("ops"):
            return JSONResponse({"ready": ready}, status_code=200 if ready else 503)
        named = checks.get("indexes", {}).get("lists")
        if isinstance(named, dict):
            checks["indexes"]["lists"] = {name: v for name, v in named.items() if caller.can_use_list(name)}
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", include_in_schema=False)
    def metrics_endpoint(_: Principal = Depends(require_ops)) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    from seawall.auth.api import router as auth_router
    from seawall.auth.views import router as auth_console_router
    from seawall.hotline.api import router as hotline_router
    from seawall.hotline.console import router as hotline_console_router
    from seawall.hotline.views import router as hotline_public_router
    from seawall.lists.api import router as lists_router
    from seawall.lists.exchanges.api import router as exchanges_router
    from seawall.lists.views import router as lists_console_router
    from seawall.matching.api import SingleLookup
    from seawall.matching.api import admin_router as matching_admin_router
    from seawall.matching.api import router as matching_router
    from seawall.matching.hma import router as hma_router
    from seawall.matching.hma_exchanges import router as hma_exchanges_router
    from seawall.matching.views import router as matching_console_router
    from seawall.reporting.api import router as reporting_router
    from seawall.reporting.views import router as reporting_console_router
    from seawall.review.views import router as review_router
    from seawall.scan.api import router as scan_router
    from seawall.selfreport.views import router as selfreport_router
    from seawall.stats.api import router as stats_router
    from seawall.stats.views import router as stats_console_router
    from seawall.web.views import router as console_router

    app.include_router(auth_router)
    app.include_router(lists_router)
    app.include_router(exchanges_router)
    app.include_router(matching_router)
    app.include_router(matching_admin_router)
    app.include_router(hma_router)
    app.include_router(hma_exchanges_router)
    app.include_router(hotline_router)
    app.include_router(reporting_router)
    app.include_router(reporting_console_router)
    app.include_router(scan_router)
    app.include_router(hotline_public_router)
    app.include_router(selfreport_router)
    app.include_router(console_router)
    app.include_router(lists_console_router)
    app.include_router(stats_router)
    app.include_router(stats_console_router)
    app.include_router(review_router)
    app.include_router(auth_console_router)
    app.include_router(hotline_console_router)
    app.include_router(matching_console_router)

    # The last added runs first: the single-lookup fast path and the body limits run inside
    # observability (request ids, metrics and access lines cover them too).
    app.add_middleware(SingleLookup)
    # Before anything reads a body: caps per route, no body from an API caller without a credential.
    app.add_middleware(BodyLimits)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    return app


def serve_app() -> FastAPI:
    """The app as ``seawall serve`` runs it, one per worker process (uvicorn's factory)."""
    return create_app(serving=True)
