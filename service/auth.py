"""Passwords, logins, tokens, CSRF, and the role checks every route declares."""

import hashlib
import hmac
import math
import secrets
from datetime import timedelta
from functools import cache
from typing import Annotated

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request
from sqlalchemy.orm import lazyload
from sqlmodel import Session, delete, select

from service.config import settings
from service.db import SessionDep, utcnow
from service.errors import Forbidden, NotAuthenticated, TooManyAttempts
from service.i18n import N_
from service.partners.models import Organisation
from service.users.models import AuthToken, Role, User

SESSION_COOKIE = "accord_session"
CSRF_COOKIE = "accord_csrf"
CSRF_FIELD = "csrf_token"
WRONG_CREDENTIALS = N_("Wrong e-mail or password.")


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib)


def hash_password(password: str) -> str:
    """An argon2id hash of `password`."""
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches the hash."""
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def _throttle(user: User) -> None:
    """Refuses an attempt while the account is locked or inside its back-off window."""
    now = utcnow()
    if user.locked_until and now < user.locked_until:
        minutes = math.ceil((user.locked_until - now).total_seconds() / 60)
        raise TooManyAttempts(
            N_("This account is locked after repeated failed logins. Try again in {minutes} min."),
            retry_after=minutes * 60,
            minutes=minutes,
        )
    excess = user.failed_logins - settings.login_slowdown_after
    if excess >= 0 and user.last_failed_login_at:
        wait = timedelta(seconds=min(2**excess, 60))
        ready_at = user.last_failed_login_at + wait
        if now < ready_at:
            seconds = math.ceil((ready_at - now).total_seconds())
            raise TooManyAttempts(
                N_("Too many failed logins. Try again in {seconds} s."),
                retry_after=seconds,
                seconds=seconds,
            )


def authenticate(*, session: Session, email: str, password: str) -> User:
    """The user with these credentials; failures are counted, slowed down, then locked out."""
    user = session.exec(select(User).where(User.email == email.strip().lower())).first()
    if user is None:
        verify_password(_dummy_hash(), password)  # the same time whether or not the account exists
        raise NotAuthenticated(WRONG_CREDENTIALS)
    _throttle(user)
    if not verify_password(user.password_hash, password) or not user.is_active:
        user.failed_logins += 1
        user.last_failed_login_at = utcnow()
        if user.failed_logins >= settings.login_lock_after:
            user.locked_until = utcnow() + timedelta(minutes=settings.login_lock_minutes)
            user.failed_logins = 0
        session.add(user)
        session.commit()
        raise NotAuthenticated(WRONG_CREDENTIALS)
    if _hasher().check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    session.add(user)
    session.commit()
    return user


def token_digest(raw: str) -> str:
    """What is kept of a token: its SHA-256."""
    return hashlib.sha256(raw.encode()).hexdigest()


def issue_token(*, session: Session, user: User, kind: str) -> str:
    """A new random token for `user` (`session` or `api`); only its hash is stored."""
    hours = settings.session_hours if kind == "session" else settings.token_hours
    raw = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(delete(AuthToken).where(AuthToken.expires_at < now))
    session.add(
        AuthToken(token_hash=token_digest(raw), kind=kind, user_id=user.id, expires_at=now + timedelta(hours=hours))
    )
    session.commit()
    return raw


def revoke_token(*, session: Session, raw: str) -> None:
    """Ends the login that `raw` stands for."""
    session.execute(delete(AuthToken).where(AuthToken.token_hash == token_digest(raw)))
    session.commit()


def user_for_token(*, session: Session, raw: str, kind: str) -> User | None:
    """The active user a live token of `kind` belongs to.

    A partner user's organisation comes in the same query: nearly every partner request needs it (a pledge
    is checked against it), and it is kept in the session for `session.get` to find without a query."""
    row = session.execute(_USER_FOR_TOKEN, {"digest": token_digest(raw), "kind": kind, "now": utcnow()}).first()
    if row is None or not row[0].is_active:
        return None
    user, organisation = row
    if organisation is not None:
        session.info[LOADED_ORGANISATION] = organisation  # the identity map alone holds it only weakly
    return user


LOADED_ORGANISATION = "accord_loaded_organisation"

# A live token of a kind, by its digest: parameters `digest`, `kind` and `now`.
LIVE_TOKEN = (
    AuthToken.token_hash == sa.bindparam("digest"),
    AuthToken.kind == sa.bindparam("kind"),
    AuthToken.expires_at > sa.bindparam("now"),
)
# Built once: every authenticated request asks it.
_USER_FOR_TOKEN = (
    select(User, Organisation)
    .join(AuthToken, AuthToken.user_id == User.id)
    .outerjoin(Organisation, Organisation.id == User.organisation_id)
    .where(*LIVE_TOKEN)
    .options(lazyload(Organisation.sector_rows))  # its sectors load when read, not with every request
)


def bearer_token(request: Request) -> str | None:
    """The API token the request carries in its Authorization header, if any."""
    scheme, _, raw = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return raw.strip() or None


def _current_user(request: Request, session: SessionDep) -> User | None:
    """The logged-in user: by bearer token under /api/, by the session cookie on pages."""
    if hasattr(request.state, "user"):
        return request.state.user
    user = None
    if request.url.path.startswith("/api/"):
        if raw := bearer_token(request):
            user = user_for_token(session=session, raw=raw, kind="api")
    elif raw := request.cookies.get(SESSION_COOKIE):
        user = user_for_token(session=session, raw=raw, kind="session")
    request.state.user = user
    return user


MaybeUser = Annotated[User | None, Depends(_current_user)]


def _required(user: User | None) -> User:
    if user is None:
        raise NotAuthenticated(N_("Please log in."))
    return user


async def _logged_in(user: MaybeUser) -> User:
    # `async`, as it does no I/O: FastAPI then runs it in the event loop, not on a pool thread.
    return _required(user)


def logged_in_user(request: Request, session: Session) -> User:
    """What `CurrentUser` gives, for a route that looks it up itself on its own thread."""
    return _required(_current_user(request, session))


CurrentUser = Annotated[User, Depends(_logged_in)]


def require_roles(*roles: Role):
    """A dependency that lets through only users holding one of `roles` (admin always passes)."""

    async def check(user: CurrentUser) -> User:  # no I/O: no trip through the thread pool
        if not user.has_role(Role.admin, *roles):
            raise Forbidden(N_("Your role does not allow this."))
        return user

    return check


AdminUser = Annotated[User, Depends(require_roles(Role.admin))]
CoordinatorUser = Annotated[User, Depends(require_roles(Role.coordinator))]
CommunicationsUser = Annotated[User, Depends(require_roles(Role.communications))]


def csrf_token(request: Request) -> str:
    """The double-submit token of this browser (set as a cookie by the middleware)."""
    return request.state.csrf_token


def new_csrf_value() -> str:
    return secrets.token_urlsafe(32)


async def check_csrf(request: Request) -> None:
    """Refuses an unsafe page request whose form token does not match the browser's cookie."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    cookie = request.cookies.get(CSRF_COOKIE, "")
    form = await request.form()
    sent = form.get(CSRF_FIELD, "")
    if not cookie or not isinstance(sent, str) or not hmac.compare_digest(cookie, sent):
        raise Forbidden(N_("The form has expired or did not come from this site. Reload the page and try again."))
