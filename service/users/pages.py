"""Logging in and out, and choosing the language: the pages every user passes through."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import HTMLResponse

from service.auth import SESSION_COOKIE, MaybeUser, authenticate, check_csrf, issue_token, revoke_token
from service.config import settings
from service.db import SessionDep
from service.errors import NotAuthenticated, TooManyAttempts
from service.i18n import LANGUAGE_COOKIE, gettext_for, normalise_language
from service.users import service
from service.users.models import Role, User
from service.web import redirect, render, safe_next

router = APIRouter(dependencies=[Depends(check_csrf)], include_in_schema=False)


def home_of(user: User) -> str:
    """Where a user starts: the staff dashboard or the partner portal."""
    return "/portal" if user.has_role(Role.partner) else "/staff"


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request, user: MaybeUser, next: Annotated[str | None, Query(max_length=500)] = None
) -> Response:
    if user is not None:
        return redirect(safe_next(next, home_of(user)))
    return render(request, "auth/login.html", {"next": next or ""})


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form(max_length=254)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    try:
        user = authenticate(session=session, email=email, password=password)
    except (NotAuthenticated, TooManyAttempts) as error:
        status = 429 if isinstance(error, TooManyAttempts) else 401
        message = error.text(gettext_for(request))
        return render(request, "auth/login.html", {"next": next, "values": {"email": email}, "error": message}, status)
    response = redirect(safe_next(next, home_of(user)))
    token = issue_token(session=session, user=user, kind="session")
    response.set_cookie(
        SESSION_COOKIE, token, max_age=settings.session_hours * 3600, httponly=True, samesite="lax",
        secure=settings.secure_cookies,
    )  # fmt: skip
    if not normalise_language(request.cookies.get(LANGUAGE_COOKIE)):
        _remember_language(response, user.language)
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> Response:
    if raw := request.cookies.get(SESSION_COOKIE):
        revoke_token(session=session, raw=raw)
    response = redirect("/")
    response.delete_cookie(SESSION_COOKIE)
    return response


def _remember_language(response: Response, language: str) -> None:
    response.set_cookie(
        LANGUAGE_COOKIE, language, max_age=365 * 24 * 3600, samesite="lax", secure=settings.secure_cookies
    )


@router.post("/language")
def choose_language(
    user: MaybeUser,
    session: SessionDep,
    language: Annotated[str, Form(max_length=5)],
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    chosen = normalise_language(language) or settings.default_language
    response = redirect(safe_next(next, "/"))
    _remember_language(response, chosen)
    if user is not None:
        service.set_language(session=session, user=user, language=chosen)
    return response
