"""Every response's security headers, and the CSRF cookie pages' forms are checked against.

A plain ASGI middleware, not `@app.middleware("http")`: Starlette's BaseHTTPMiddleware copies each
request body and response through memory streams and a task group, a cost every pledge in a surge paid.
"""

from http.cookies import SimpleCookie

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import CSRF_COOKIE, new_csrf_value
from service.config import settings

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Paths that never show a form needing a token: no CSRF cookie is made for them (the public pages
# are cached, so a cookie there could be handed by a shared cache to many visitors).
WITHOUT_FORMS = (
    "/api/", "/static/", "/healthz", "/readyz", "/metrics", "/verify", "/updates/", "/fact-checks", "/feeds/",
    "/decisions",
)  # fmt: skip
# The public home likewise (a prefix of every path, so it is matched whole).
PUBLIC_HOME = "/"
# FastAPI's own API documentation pages load their script from a CDN: no page CSP there.
WITHOUT_CSP = ("/docs", "/redoc")


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope["headers"]:
        if key == b"cookie":
            morsel = SimpleCookie(value.decode("latin-1")).get(name)
            if morsel is not None and morsel.value:
                return morsel.value
    return None


class SecurityHeaders:
    """Adds the security headers (and a CSP on HTML pages); gives a page visitor a CSRF cookie."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        new_token = None
        if path != PUBLIC_HOME and not path.startswith(WITHOUT_FORMS):
            token = _cookie(scope, CSRF_COOKIE)
            if token is None:
                token = new_token = new_csrf_value()
            scope.setdefault("state", {})["csrf_token"] = token

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if headers.get("content-type", "").startswith("text/html") and not path.startswith(WITHOUT_CSP):
                    headers.setdefault("Content-Security-Policy", PAGE_CSP)
                if new_token is not None:
                    secure = "; Secure" if settings.secure_cookies else ""
                    headers.append("set-cookie", f"{CSRF_COOKIE}={new_token}; HttpOnly; Path=/; SameSite=lax{secure}")
            await send(message)

        await self.app(scope, receive, send_with_headers)
