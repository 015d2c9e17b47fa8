"""The public surfaces' HTTP caching: validators (ETag, Last-Modified), `Cache-Control` a proxy or CDN can
act on, `304 Not Modified`, and a short-lived copy of each rendered page in this process.

Under a surge almost every request is for the same few pages. `PublicFastPath` answers those from the copy
before routing (no session, no thread), and the routes fill it. A copy lives `public_cache_seconds`; a
change committed in this process clears it at once, one committed by another process is seen when the
copy runs out, which is well inside the `max-age` the responses already allow proxies.
"""

import gzip
import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import parse_qsl, urlencode

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from service.config import settings

MAX_ENTRIES = 2000
COMPRESS_FROM = 512  # bytes: smaller answers go as they are


@dataclass(frozen=True)
class Rendered:
    body: bytes
    media_type: str
    last_modified: datetime


@dataclass(frozen=True)
class Cached:
    body: bytes
    gzipped: bytes | None
    etag: str
    last_modified: str
    media_type: str
    fresh_until: float
    security_headers: tuple[tuple[bytes, bytes], ...] = ()


def cache_control() -> str:
    age = settings.public_max_age_seconds
    return f"public, max-age={age}, stale-while-revalidate={age}, stale-if-error={settings.public_stale_seconds}"


def key_of(path: str, query_string: bytes | str) -> tuple[str, str]:
    """The cache key of a request: its path and its query in a canonical order."""
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    return path, urlencode(sorted(parse_qsl(query_string, keep_blank_values=True)))


def make(rendered: Rendered) -> Cached:
    digest = hashlib.sha256(rendered.body).hexdigest()[:32]
    gzipped = gzip.compress(rendered.body, compresslevel=6, mtime=0) if len(rendered.body) >= COMPRESS_FROM else None
    return Cached(
        body=rendered.body,
        gzipped=gzipped,
        etag=f'"{digest}"',
        last_modified=format_datetime(rendered.last_modified.replace(microsecond=0), usegmt=True),
        media_type=rendered.media_type,
        fresh_until=time.monotonic() + settings.public_cache_seconds,
        security_headers=tuple(_security_headers(rendered.media_type)),
    )


class PageCache:
    """This process's copies of rendered public responses."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Cached] = {}
        self._lock = threading.Lock()
        self.generation = 0  # counts clears: a page rendered before a change is not kept after it

    def get(self, key: tuple[str, str]) -> Cached | None:
        entry = self._entries.get(key)
        if entry is None or entry.fresh_until < time.monotonic():
            return None
        return entry

    def stale(self, key: tuple[str, str]) -> Cached | None:
        """The copy of `key`, even one that ran out (a change clears them all)."""
        return self._entries.get(key)

    def put(self, key: tuple[str, str], rendered: Rendered, generation: int | None = None) -> Cached:
        """Keeps `rendered`, unless a change cleared the copies after `generation` (when its render began)."""
        entry = make(rendered)
        if settings.public_cache_seconds > 0:
            with self._lock:
                if generation is not None and generation != self.generation:
                    return entry
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()  # odd query strings cannot grow it without bound
                self._entries[key] = entry
        return entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.generation += 1


pages = PageCache()


def _accepts_gzip(headers: dict[bytes, bytes]) -> bool:
    accept = headers.get(b"accept-encoding", b"").decode("latin-1").lower()
    return any(
        part.split(";")[0].strip() in ("gzip", "*") and "q=0" not in part.replace(" ", "") for part in accept.split(",")
    )


def _not_modified(headers: dict[bytes, bytes], entry: Cached, etag: str) -> bool:
    match = headers.get(b"if-none-match")
    if match is not None:
        tags = {t.strip().removeprefix("W/") for t in match.decode("latin-1").split(",")}
        return "*" in tags or etag in tags or entry.etag in tags
    since = headers.get(b"if-modified-since")
    if since is not None:
        try:
            return parsedate_to_datetime(since.decode("latin-1")) >= parsedate_to_datetime(entry.last_modified)
        except (TypeError, ValueError):
            return False
    return False


def _security_headers(media_type: str) -> list[tuple[bytes, bytes]]:
    # The same as service.middleware.SecurityHeaders adds (imported late: that module imports the auth layer).
    from service.middleware import PAGE_CSP, SECURITY_HEADERS

    headers = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
    if media_type.startswith("text/html"):
        headers.append((b"content-security-policy", PAGE_CSP.encode()))
    return headers


def answer(entry: Cached, request_headers: dict[bytes, bytes], *, head: bool = False) -> tuple[int, list, bytes]:
    """(status, headers, body) of a cached response for this request: 304, gzip or identity, with the
    security headers every response carries (the fast path answers before the middleware that adds them)."""
    compressed = entry.gzipped is not None and _accepts_gzip(request_headers)
    etag = entry.etag[:-1] + '-gz"' if compressed else entry.etag
    headers = [
        (b"etag", etag.encode()),
        (b"last-modified", entry.last_modified.encode()),
        (b"cache-control", cache_control().encode()),
        (b"vary", b"Accept-Encoding"),
        *entry.security_headers,
    ]
    if _not_modified(request_headers, entry, etag):
        return 304, headers, b""
    body = entry.gzipped if compressed else entry.body
    headers += [(b"content-type", entry.media_type.encode()), (b"content-length", str(len(body)).encode())]
    if compressed:
        headers.append((b"content-encoding", b"gzip"))
    return 200, headers, b"" if head else body


class PublicFastPath:
    """Answers GET and HEAD of a public page from this process's fresh copy, before any routing."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...], exact: tuple[str, ...]) -> None:
        self.app = app
        self.prefixes = prefixes
        self.exact = frozenset(exact)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path = scope["path"]
            if path in self.exact or path.startswith(self.prefixes):
                entry = pages.get(key_of(path, scope["query_string"]))
                if entry is not None:
                    status, headers, body = answer(entry, dict(scope["headers"]), head=scope["method"] == "HEAD")
                    await send({"type": "http.response.start", "status": status, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)


class GZipExceptPublic(GZipMiddleware):
    """Starlette's GZip for every response but the public surfaces, which choose their own encoding (and
    validators to match) and would otherwise get `Vary: Accept-Encoding` twice."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...], exact: tuple[str, ...], **options: int) -> None:
        super().__init__(app, **options)
        self.prefixes = prefixes
        self.exact = frozenset(exact)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["path"] in self.exact or scope["path"].startswith(self.prefixes)):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
