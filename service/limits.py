"""Limits that keep one client, or one stuck query, from taking the service down: the size of a request body,
the rate of logins and anonymous uploads per client address, the length of a list, and a clear 503 when the
database does not answer in time."""

import logging
import math
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.config import settings
from service.db import DatabaseBusy
from service.errors import TooManyAttempts
from service.i18n import N_, gettext_for
from service.pagination import PageParams
from service.web import render

log = logging.getLogger("accord.limits")

MB = 1024 * 1024
BODY_TOO_LARGE = N_("The request is larger than {mb} MB, the most this service accepts.")
TOO_MANY_REQUESTS = N_("Too many requests from your address. Try again in {seconds} s.")
DATABASE_BUSY = N_("The database is busy; please try again in a moment.")
BUSY_RETRY_AFTER_SECONDS = 5
# PostgreSQL's codes for a statement cancelled (by statement_timeout) and a lock not granted within lock_timeout.
TIMEOUT_SQLSTATES = frozenset({"57014", "55P03"})
MAX_LIST_ITEMS = 500
# Clients remembered by a rate limiter at most; beyond that the longest quiet one is forgotten first.
REMEMBERED_CLIENTS = 10_000


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return request.url.path.startswith("/api/") or ("application/json" in accept and "text/html" not in accept)


def refusal(request: Request, status_code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A limit's answer: `{"detail": message}` under /api/ (or to a client asking for JSON), else the error page."""
    if _wants_json(request):
        return JSONResponse({"detail": message}, status_code=status_code, headers=headers)
    page = render(request, "errors/error.html", {"message": message}, status_code)
    page.headers.update(headers or {})
    return page


# --- request bodies ---------------------------------------------------------------------------------------


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses that itself; counted below if it lets it through
    return None


class BodySizeLimit:
    """Refuses a request body over `max_bytes` with 413: by its Content-Length before any of it is read, or,
    sent without one (chunked), as soon as the bytes received pass the limit.

    Not FastAPI's own `max_body_size`: with a Content-Length over the limit it still runs a route that reads
    no body (a change made, then answered 413), and its answer is plain text rather than JSON or the page.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, scope: Scope) -> Response:
        request = Request(scope)
        message = gettext_for(request)(BODY_TOO_LARGE).format(mb=f"{self.max_bytes / MB:g}")
        return refusal(request, 413, message, {"Connection": "close"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            log.info("refused a %d-byte body to %s %s", declared, scope["method"], scope["path"])
            await self._too_large(scope)(scope, receive, send)
            return
        if declared is not None:  # the server passes on no more than was declared
            await self.app(scope, receive, send)
            return

        received, refused, started = 0, False, False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answered now; to the app the client has gone, and what it answers is dropped.
                    refused = True
                    log.info("refused a streamed body over %d bytes to %s %s", received, scope["method"], scope["path"])
                    if not started:
                        await self._too_large(scope)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise
            log.debug("the app's error after a refused body", exc_info=True)  # it read a body cut short


# --- rates per client address -----------------------------------------------------------------------------


class RateLimiter:
    """At most `limit` requests per client in any `window` seconds: a sliding log of each client's times.

    Thread-safe (routes run in the thread pool). A client quiet for a whole window is forgotten (its log says
    nothing any more), and at most `max_clients` are remembered, so memory stays bounded under a flood of
    addresses. Per process: several processes behind nginx each count their own share.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_clients: int = REMEMBERED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self.clock = clock
        self._times: OrderedDict[str, deque[float]] = OrderedDict()  # by each client's last counted request
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._times)

    def wait(self, client: str) -> float:
        """0.0, the request counted; or how many seconds until `client` may try again (not counted)."""
        if self.limit <= 0:
            return 0.0
        now = self.clock()
        start = now - self.window
        with self._lock:
            while self._times:  # the quietest first: stop at the first one still inside the window
                oldest = next(iter(self._times.values()))
                if oldest[-1] > start:
                    break
                self._times.popitem(last=False)
            times = self._times.get(client)
            if times is None:
                times = self._times[client] = deque()
            while times and times[0] <= start:
                times.popleft()
            if len(times) >= self.limit:
                return times[0] - start
            times.append(now)
            self._times.move_to_end(client)
            if len(self._times) > self.max_clients:
                self._times.popitem(last=False)
            return 0.0


def client_address(request: Request) -> str:
    """The client's address (behind nginx, uvicorn's proxy-headers handling has put the real one here)."""
    return request.client.host if request.client else "unknown"


def count_request(request: Request, kind: str) -> None:
    """Counts a `login` or `public_write` request from the client's address; over the limit, 429."""
    wait = request.app.state.rate_limiters[kind].wait(client_address(request))
    if wait:
        seconds = max(1, math.ceil(wait))
        log.info("%s rate limit: %s refused for %d s", kind, client_address(request), seconds)
        raise TooManyAttempts(TOO_MANY_REQUESTS, retry_after=seconds, seconds=seconds)


async def login_rate(request: Request) -> None:
    """A route dependency: counts a login attempt from the client's address before any password is hashed."""
    count_request(request, "login")


# --- list lengths -----------------------------------------------------------------------------------------


def list_window(
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_ITEMS, description="How many items (1–500).")] = MAX_LIST_ITEMS,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="How many items to skip.")] = 0,
) -> PageParams:
    """The part of a bare list (no `total` around it) to answer with: at most 500 items, all of them by default
    for the short lists these are (a need's pledges, a pledge's receipts)."""
    return PageParams(limit=limit, offset=offset)


ListWindow = Annotated[PageParams, Depends(list_window)]


# --- a database that does not answer in time ------------------------------------------------------------


def database_timed_out(exc: Exception) -> bool:
    """Whether `exc` is the database not answering in time (a statement or lock timeout, no connection free,
    SQLite's write lock held elsewhere), rather than a fault to report as a 500."""
    if isinstance(exc, DatabaseBusy | sa.exc.TimeoutError):
        return True
    if isinstance(exc, sa.exc.OperationalError):
        if getattr(exc.orig, "sqlstate", None) in TIMEOUT_SQLSTATES:
            return True
        return isinstance(exc.orig, sqlite3.OperationalError) and "locked" in str(exc.orig)
    return False


async def database_busy(request: Request, exc: Exception) -> Response:
    """503 with Retry-After; the request's session has already rolled back and let its connection go."""
    if not database_timed_out(exc):
        raise exc
    log.warning("database busy, answered 503: %s %s: %s", request.method, request.url.path, getattr(exc, "orig", exc))
    message = gettext_for(request)(DATABASE_BUSY)
    return refusal(request, 503, message, {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)})


def install(app: FastAPI) -> None:
    """Adds the body-size limit, the rate limiters and the 503 for a database that does not answer in time."""
    if settings.attachment_max_mb + 1 > settings.max_body_mb:
        raise RuntimeError(
            f"ACCORD_MAX_BODY_MB ({settings.max_body_mb:g}) must be at least 1 MB more than ACCORD_ATTACHMENT_MAX_MB "
            f"({settings.attachment_max_mb:g}), or attachments of the allowed size would be refused."
        )
    app.add_middleware(BodySizeLimit, max_bytes=int(settings.max_body_mb * MB))
    window = settings.rate_limit_window_seconds
    app.state.rate_limiters = {
        "login": RateLimiter(settings.login_rate_limit, window),
        "public_write": RateLimiter(settings.public_write_rate_limit, window),
    }
    for error in (sa.exc.OperationalError, sa.exc.TimeoutError, DatabaseBusy):
        app.add_exception_handler(error, database_busy)
