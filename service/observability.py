"""Operations: log lines that name their request (or job), `/readyz`, and `/metrics` in Prometheus's format.

Every HTTP request gets an id (the caller's `X-Request-ID` when it is sane, else a new one) that is sent back
and carried by a context variable, so each line logged while the request is handled — in the event loop, in
the thread pool, by uvicorn — names it. Metrics are prometheus-client's; under `accord serve` they are kept in
files shared by the worker processes (its multiprocess mode), so whichever process answers a scrape reports
the totals. The database's own numbers (pledges, memoranda, the outbox) are counted when scraped.
"""

import atexit
import contextlib
import fcntl
import hmac
import ipaddress
import json
import logging
import logging.config
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.audit import sealing_problem
from service.config import settings
from service.db import alembic_config

log = logging.getLogger("accord.observability")
access_log = logging.getLogger("accord.access")

_request_id: ContextVar[str | None] = ContextVar("accord_request_id", default=None)
_job_id: ContextVar[str | None] = ContextVar("accord_job_id", default=None)

REQUEST_ID_HEADER = b"x-request-id"
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
UNMATCHED = "unmatched"  # the route label of a request no route answered: raw paths would be unbounded
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ROUTES_REMEMBERED = 4096
# Attributes the access line sets on its record: JSON lines carry them as fields of their own.
ACCESS_FIELDS = ("method", "path", "route", "status", "duration_ms", "client")


# --- log lines -----------------------------------------------------------------------------------------


class TextFormatter(logging.Formatter):
    """Readable lines for development: time, level, logger, [request id or job], message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(context)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        job = _job_id.get()
        record.context = f"job {job}" if job else (_request_id.get() or "-")
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line for production's log collector; ASCII only, so no locale can garble it."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _request_id.get(),
        }
        job = _job_id.get()
        if job:
            entry["job"] = job
        fields = record.__dict__
        for name in ACCESS_FIELDS:
            if name in fields:
                entry[name] = fields[name]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def logging_config(*, access_log: bool = True) -> dict[str, Any]:
    """The logging of every `accord` process, uvicorn's loggers included (it applies this in each worker)."""
    formatter = "JsonFormatter" if settings.log_format == "json" else "TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"accord": {"()": f"{__name__}.{formatter}"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "accord", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": settings.log_level},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True, "level": "INFO"},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": "INFO"},
            # Our access line replaces uvicorn's: it has the route, the duration and the request id.
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
            "accord.access": {"level": "INFO" if access_log else "WARNING"},
            # Two lines for every run of every job, some every two seconds; failures are still logged.
            "apscheduler": {"level": "WARNING"},
            "alembic.runtime.plugins": {"level": "WARNING"},  # a line for each of its plugins, at every start
            "psycopg.pool": {"level": "WARNING"},  # two lines for every connection lent (each partner's pledge)
        },
    }


def configure_logging(*, access_log: bool = True) -> None:
    logging.config.dictConfig(logging_config(access_log=access_log))
    logging.captureWarnings(True)  # a library's warning is a line in the same format, not stray text


# --- the request middleware ----------------------------------------------------------------------------


def _incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if _SANE_REQUEST_ID.fullmatch(value) else None
    return None


class RequestObservability:
    """Gives each HTTP request its id, counts and times it by route, and writes its access line.

    A plain ASGI middleware, outermost, so that the public pages answered from the cache before routing are
    counted too. It runs for every request, so it keeps one set of metric children per (method, route,
    status) instead of looking them up by labels each time.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.metrics = metrics()
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        # Routes of paths seen routed: a page the cache answers before routing is counted under its route.
        self._route_of_path: dict[str, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _incoming_request_id(scope["headers"]) or os.urandom(16).hex()
        # Not reset afterwards: each request runs in a task of its own whose context goes with it, and the
        # server's own line about an exception that escaped the app, logged after we return, names it too.
        _request_id.set(request_id)
        id_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if not status:
                # Starlette's error middleware, outside this one, would answer without the id the caller
                # needs to find this failure in the log; it sees the answer started and sends none.
                status = 500
                await send_with_id(
                    {"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"text/plain")]}
                )
                await send({"type": "http.response.body", "body": b"Internal Server Error"})
            raise
        finally:
            self._record(scope, status or 500, time.perf_counter() - start)

    def _route(self, scope: Scope, status: int) -> str:
        route = scope.get("route")
        if route is not None:
            template = getattr(route, "path", None) or UNMATCHED
        elif "endpoint" in scope:  # a mounted app (the static files): its mount point
            template = scope.get("root_path", "") + "/{path}"
        elif "router" in scope:  # routed, and no route matched
            return UNMATCHED
        else:  # answered before routing (the public pages' cache)
            return self._route_of_path.get(scope["path"], UNMATCHED)
        if status == 200 and scope["method"] == "GET":
            remembered = self._route_of_path
            if len(remembered) >= _ROUTES_REMEMBERED:
                remembered.clear()  # odd paths cannot grow it without bound
            remembered[scope["path"]] = template
        return template

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in _METHODS else "other"
        route = self._route(scope, status)
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                self.metrics.requests.labels(method, route, str(status)),
                self.metrics.latency.labels(method, route),
            )
        series[0].inc()
        series[1].observe(seconds)
        if access_log.isEnabledFor(logging.INFO):
            client = scope.get("client")
            access_log.info(
                "%s %s %s %.1f ms",
                method,
                scope["path"],
                status,
                seconds * 1000,
                extra={
                    "method": method,
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "client": client[0] if client else None,
                },
            )


# --- metrics -------------------------------------------------------------------------------------------

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_JOB_BUCKETS = (0.05, 0.25, 1, 5, 30, 120, 600)


def _multiprocess_dir() -> str | None:
    # prometheus-client's own contract: the variable is how its metrics know to live in shared files.
    return os.environ.get(MULTIPROCESS_ENV)


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        # Our own registry: in a single process the scrape reads these; in multiprocess mode their files.
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests", "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "http_request_duration_seconds", "Time to answer an HTTP request, by method and route template.",
            ["method", "route"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.job_runs = Counter("accord_job_runs", "Scheduled job runs, by job.", ["job"], registry=self.registry)
        self.job_failures = Counter(
            "accord_job_failures", "Scheduled job runs that failed, by job.", ["job"], registry=self.registry
        )
        self.job_duration = Histogram(
            "accord_job_duration_seconds", "How long a scheduled job ran, by job.", ["job"],
            buckets=_JOB_BUCKETS, registry=self.registry,
        )  # fmt: skip


@cache
def metrics() -> _Metrics:
    """This process's metrics, made at first use: prometheus-client picks its storage when the first metric
    is made, which must come after `accord serve` has named the shared directory."""
    made = _Metrics()
    if _multiprocess_dir():
        from prometheus_client import multiprocess

        # Only the live gauges' files go (we have none today); counters stay, so totals never drop.
        atexit.register(multiprocess.mark_process_dead, os.getpid())
    return made


@contextlib.contextmanager
def job_run(job_id: str) -> Iterator[None]:
    """Around one run of a scheduled job: its lines name the job, and the run is counted and timed."""
    counters = metrics()
    token = _job_id.set(job_id)
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        counters.job_failures.labels(job_id).inc()
        raise
    finally:
        counters.job_runs.labels(job_id).inc()
        counters.job_duration.labels(job_id).observe(time.perf_counter() - start)
        _job_id.reset(token)  # the executor's thread runs other jobs next


@contextlib.contextmanager
def multiprocess_metrics(parent: Path) -> Iterator[Path]:
    """A fresh directory below `parent` for the metric files of this server's worker processes, named in the
    environment they inherit, removed when the server stops. Directories left by servers that died without
    cleaning up are removed at start; those of servers still running (each holds a lock on its own) are not.
    """
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.glob("serve-*"):
        with contextlib.suppress(OSError):
            fd = os.open(old, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken: its server is gone
                shutil.rmtree(old, ignore_errors=True)
            finally:
                os.close(fd)
    # Made and locked under a name the sweep above skips, then renamed: never seen unlocked.
    staging = Path(tempfile.mkdtemp(prefix=".new-", dir=parent))
    fd = os.open(staging, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    path = parent / f"serve-{staging.name.removeprefix('.new-')}"
    staging.rename(path)
    kept = os.environ.get(MULTIPROCESS_ENV)
    os.environ[MULTIPROCESS_ENV] = str(path)  # the workers, started after this, inherit it
    try:
        yield path
    finally:
        if kept is None:
            os.environ.pop(MULTIPROCESS_ENV, None)
        else:
            os.environ[MULTIPROCESS_ENV] = kept
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


class DatabaseCollector:
    """Numbers the database holds, counted at each scrape by the process that answers it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("accord_database_up", "Whether the scrape could read the database (1) or not (0).")
        try:
            counted = self._count()
        except Exception:
            log.warning("metrics: the database could not be read", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        pledges, memoranda, outbox, oldest_unsent = counted
        for name, text, by_status in (
            ("accord_pledges", "Pledges, by status.", pledges),
            ("accord_memoranda", "Memoranda, by status.", memoranda),
            ("accord_outbox_messages", "Outbox e-mail messages, by status.", outbox),
        ):
            family = GaugeMetricFamily(name, text, labels=["status"])
            for status, count in by_status.items():
                family.add_metric([status], count)
            yield family
        yield GaugeMetricFamily(
            "accord_outbox_backlog", "E-mail messages not sent yet (pending or being sent).",
            value=outbox["pending"] + outbox["sending"],
        )  # fmt: skip
        age = (datetime.now(UTC) - oldest_unsent).total_seconds() if oldest_unsent else 0.0
        yield GaugeMetricFamily(
            "accord_outbox_oldest_unsent_age_seconds", "Age of the oldest message not sent yet (0: none).", value=age
        )

    def _count(self) -> tuple[dict[str, int], dict[str, int], dict[str, int], datetime | None]:
        from sqlmodel import Session, func, select

        from service.emergencies.models import Pledge, PledgeStatus
        from service.memoranda.models import Memorandum, MemorandumStatus
        from service.notifications.models import OutboxMessage, OutboxStatus

        def by_status(session: Session, column: Any, statuses: type) -> dict[str, int]:
            counts = {status.value: 0 for status in statuses}
            for status, count in session.exec(select(column, func.count()).group_by(column)):
                counts[str(status)] = count
            return counts

        with Session(self.engine) as session:
            pledges = by_status(session, Pledge.status, PledgeStatus)
            memoranda = by_status(session, Memorandum.status, MemorandumStatus)
            outbox = by_status(session, OutboxMessage.status, OutboxStatus)
            oldest_unsent = session.exec(
                select(func.min(OutboxMessage.created_at)).where(
                    OutboxMessage.status.in_([OutboxStatus.pending, OutboxStatus.sending])
                )
            ).one()
        return pledges, memoranda, outbox, oldest_unsent


def exposition(engine: Engine) -> bytes:
    """The metrics in Prometheus's text format: every worker process's (or this one's) and the database's."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    scraped = CollectorRegistry()
    path = _multiprocess_dir()
    if path:
        MultiProcessCollector(scraped, path=path)
    else:
        scraped.register(metrics().registry)
    scraped.register(DatabaseCollector(engine))
    return generate_latest(scraped)


def metrics_allowed(request: Request) -> bool:
    """With a token configured, only a request bearing it; otherwise only a loopback client (behind nginx,
    uvicorn's proxy headers make `request.client` the real client)."""
    token = settings.metrics_token
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    if request.client is None:
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


# --- readiness -----------------------------------------------------------------------------------------


@cache
def _migrations() -> tuple[str | None, frozenset[str]]:
    """The code's migration head and every revision it knows: they ship with the code."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(""))
    return script.get_current_head(), frozenset(rev.revision for rev in script.walk_revisions())


def readiness(engine: Engine) -> tuple[bool, dict[str, Any]]:
    """Whether this process can serve: the database answers, its schema is the one this code needs, and (on
    PostgreSQL) its trigger seals the audit log."""
    head, known = _migrations()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            # Read directly: Alembic's MigrationContext would log two lines at every probe.
            current = None
            if sa.inspect(conn).has_table("alembic_version"):
                current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            sealing = sealing_problem(conn) if current == head else None
    except Exception as error:
        log.warning("not ready: the database did not answer", exc_info=True)
        # The class, not the message: this answer is public, and a driver's message names hosts and users.
        failure = f"unreachable ({type(getattr(error, 'orig', None) or error).__name__})"
        return False, {"status": "not ready", "checks": {"database": failure, "migrations": "not checked"}}
    checks: dict[str, str] = {"database": "ok"}
    if current == head:
        checks["migrations"] = "ok"
    elif current is None or current in known:
        checks["migrations"] = f"behind: the database is at {current or 'no revision'}, this version needs {head}"
    else:
        checks["migrations"] = f"unknown: the database is at {current}, which this version (at {head}) does not know"
    if sealing:
        checks["audit"] = sealing
    ready = current == head and not sealing
    return ready, {"status": "ready" if ready else "not ready", "checks": checks, "revision": head}


# --- the routes ----------------------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """For a load balancer or process manager: 200 when ready, 503 naming what is not (`/healthz` stays cheap)."""
    ready, body = readiness(request.app.state.engine)
    return JSONResponse(body, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})


@router.get("/metrics")
def prometheus_metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    if not metrics_allowed(request):
        return JSONResponse(
            {"detail": "The metrics are for the monitoring system: send its bearer token, or ask from this host."},
            status_code=403,
        )
    return Response(exposition(request.app.state.engine), media_type=CONTENT_TYPE_LATEST)
