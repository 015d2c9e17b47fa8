"""The application factory: settings, database, routers, error rendering, static files, scheduler."""

import gc
import logging
import math
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import cache, partial

import sqlalchemy as sa
from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import audit_api, audit_pages, limits, observability, pdf, site
from service.bulletins import api as bulletins_api
from service.bulletins import mirror as public_mirror
from service.bulletins import pages as bulletins_pages
from service.bulletins import public as bulletins_public
from service.bulletins.http_cache import GZipExceptPublic, PublicFastPath
from service.bulletins.http_cache import pages as public_pages
from service.config import settings
from service.consultations import api as consultations_api
from service.consultations import pages as consultations_pages
from service.consultations import portal as consultations_portal
from service.consultations import public as consultations_public
from service.cpus import off_the_loop
from service.db import check_migrated, create_db_engine, event_loop_pool_open
from service.emergencies import api as emergencies_api
from service.emergencies import pages as emergencies_pages
from service.emergencies import portal as emergencies_portal
from service.emergencies import sitrep as emergencies_sitrep
from service.errors import DomainError, NotAuthenticated, domain_error_json
from service.i18n import gettext_for
from service.memoranda import api as memoranda_api
from service.memoranda import documents as memorandum_documents
from service.memoranda import pages as memoranda_pages
from service.memoranda import portal as memoranda_portal
from service.memoranda import public as memoranda_public
from service.middleware import SecurityHeaders
from service.partners import api as partners_api
from service.partners import pages as partners_pages
from service.scheduler import SchedulerRunner
from service.users import api as users_api
from service.users import pages as users_pages
from service.web import TEMPLATES_DIR, login_redirect, render

log = logging.getLogger("accord")


def _printable(errors: Sequence[dict]) -> list[dict]:
    """Validation errors whose echoed input JSON can carry: NaN and Infinity become text."""
    fixed = []
    for error in errors:
        value = error.get("input")
        if isinstance(value, float) and not math.isfinite(value):
            error = {**error, "input": str(value)}
        fixed.append(error)
    return fixed


@cache
def _memorandum_template_problems() -> tuple[str, ...]:
    """Checked once a process: the templates ship with the code."""
    return tuple(memorandum_documents.check_declarations())


def _rebuild_mirror(engine: Engine) -> None:
    try:
        public_mirror.refresh(engine)
    except Exception:
        log.exception("the static mirror of the public site was not rebuilt; the job tries again")


def create_app(engine: Engine | None = None, *, run_scheduler: bool | None = None) -> FastAPI:
    """The application on `engine` (by default the configured database), refusing an unmigrated one."""
    engine = engine or create_db_engine(settings.effective_database_url, timeouts=True)
    check_migrated(engine)
    problems = _memorandum_template_problems()
    if problems:  # a signed document must never come out with a blank where a variable should be
        raise RuntimeError("The memorandum templates disagree with their declarations:\n" + "\n".join(problems))
    public_pages.clear()  # copies rendered from another database (tests make many apps in one process)
    runner = SchedulerRunner(engine) if (settings.run_scheduler if run_scheduler is None else run_scheduler) else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runner:
            runner.start()
        # What start-up loaded lives as long as the process: keep it out of every later full collection,
        # which otherwise costs a big page (the coverage board) ~100 ms every few renders.
        gc.freeze()
        if settings.pdf_warm_up:
            threading.Thread(target=off_the_loop(pdf.warm_up), name="pdf-warm-up", daemon=True).start()
        if settings.public_mirror:  # a mirror lost or left behind while the app was down is made whole
            rebuild = off_the_loop(partial(_rebuild_mirror, engine))
            threading.Thread(target=rebuild, name="public-mirror", daemon=True).start()
        async with event_loop_pool_open(app, engine, settings.pledge_concurrency):
            yield
        if runner:
            runner.stop()

    app = FastAPI(
        title="Crisis Accord",
        version="0.1.0",
        description="Partners, memoranda, logistics pledges and verified public updates for a municipality's "
        "crisis staff.",
        lifespan=lifespan,
    )
    app.state.engine = engine
    # Pages like the coverage board are large and repetitive HTML: compressed, they cross a weak link fast.
    # Public pages under a surge are answered from this process's fresh copy before any routing.
    public_paths = {
        "prefixes": bulletins_public.PREFIXES,
        "exact": bulletins_public.EXACT_PATHS + consultations_public.EXACT_PATHS,
    }
    limits.install(app)  # innermost: its 413 page gets the security headers; the 503 handler for slow queries
    app.add_middleware(GZipExceptPublic, minimum_size=2048, compresslevel=5, **public_paths)
    app.add_middleware(SecurityHeaders)
    # Outermost: a hit costs no other middleware (its answer carries the same security headers).
    app.add_middleware(PublicFastPath, **public_paths)
    # Outside even that: every request, a cached page's too, gets its id and is counted (keep it outermost).
    app.add_middleware(observability.RequestObservability)
    app.state.scheduler = runner

    for router in (
        users_api.auth_router, users_api.router, partners_api.router, emergencies_api.router, memoranda_api.router,
        audit_api.router, bulletins_api.router, bulletins_public.router, consultations_api.router,
        site.router, users_pages.router, partners_pages.router, emergencies_pages.router, emergencies_sitrep.router,
        emergencies_portal.router, audit_pages.router, memoranda_pages.router, memoranda_portal.router,
        memoranda_public.router, bulletins_pages.router, consultations_public.router,
        consultations_pages.router, consultations_portal.router,
    ):  # fmt: skip
        app.include_router(router)
    app.include_router(observability.router)  # /readyz and /metrics, kept out of the API's schema
    app.mount("/static", StaticFiles(directory=TEMPLATES_DIR / "static"), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        if request.url.path.startswith("/api/"):
            return domain_error_json(request, exc)
        if isinstance(exc, NotAuthenticated):
            return login_redirect(request)
        return render(request, "errors/error.html", {"message": exc.text(gettext_for(request))}, exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(("/api/", "/static/")) or exc.status_code < 400:
            from fastapi.exception_handlers import http_exception_handler

            return await http_exception_handler(request, exc)
        _ = gettext_for(request)
        message = _("There is no such page.") if exc.status_code == 404 else _("The request is not valid.")
        return render(request, "errors/error.html", {"message": message}, exc.status_code)

    @app.exception_handler(sa.exc.DataError)
    async def unstorable(request: Request, exc: sa.exc.DataError) -> Response:
        # Input that passed validation but the database cannot hold (a NUL character in text on PostgreSQL):
        # the request's transaction is rolled back with its session; the client gets a clear 422.
        log.info("refused input the database cannot store: %s", exc.orig)
        _ = gettext_for(request)
        message = _("The request has characters or values that cannot be stored.")
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": message}, status_code=422)
        return render(request, "errors/error.html", {"message": message}, 422)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": jsonable_encoder(_printable(exc.errors()))}, status_code=422)
        _ = gettext_for(request)
        return render(request, "errors/error.html", {"message": _("The request is not valid.")}, 422)

    return app
