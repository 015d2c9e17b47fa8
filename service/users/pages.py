"""Logging in and out, and choosing the language: the pages every user passes through."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import HTMLResponse

from service import limits
from service.auth import (
    SESSION_COOKIE,
    AdminUser,
    MaybeUser,
    authenticate,
    check_csrf,
    issue_token,
    revoke_token,
)
from service.config import settings
from service.db import Id, SessionDep
from service.errors import DomainError, NotAuthenticated, NotFound, TooManyAttempts
from service.i18n import LANGUAGE_COOKIE, N_, gettext_for, normalise_language
from service.pagination import PageDep
from service.users import service
from service.users.models import ROLE_LABELS, Role, User, UserCreate, UserUpdate
from service.web import form_values, parse_form, redirect, render, safe_next

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
        limits.count_request(request, "login")  # per address, on top of the per-account slowdown
        user = authenticate(session=session, email=email, password=password)
    except (NotAuthenticated, TooManyAttempts) as error:
        status = 429 if isinstance(error, TooManyAttempts) else 401
        message = error.text(gettext_for(request))
        page = render(request, "auth/login.html", {"next": next, "values": {"email": email}, "error": message}, status)
        if isinstance(error, TooManyAttempts):
            page.headers["Retry-After"] = str(error.retry_after)
        return page
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


# --- administrators: the accounts --------------------------------------------------------------------


@router.get("/staff/users", response_class=HTMLResponse)
def users_page(request: Request, admin: AdminUser, session: SessionDep, page: PageDep) -> Response:
    accounts, total = service.search(session=session, limit=page.limit, offset=page.offset)
    return render(
        request,
        "staff/users/list.html",
        {"accounts": accounts, "total": total, "page": page, "role_labels": ROLE_LABELS},
    )


@router.post("/staff/users", response_class=HTMLResponse)
async def create_staff_user(request: Request, admin: AdminUser, session: SessionDep, page: PageDep) -> Response:
    form = await request.form()
    values = form_values(form, lists=("roles",))
    data, errors = parse_form(UserCreate, values, gettext_for(request))
    if data is not None:
        try:
            service.create(session=session, actor=admin, data=data)
        except DomainError as error:
            errors = {error.field or "__all__": error.text(gettext_for(request))}
        else:
            return redirect("/staff/users")
    values.pop("password", None)
    accounts, total = service.search(session=session, limit=page.limit, offset=page.offset)
    return render(
        request,
        "staff/users/list.html",
        {
            "accounts": accounts,
            "total": total,
            "page": page,
            "role_labels": ROLE_LABELS,
            "values": values,
            "errors": errors,
        },
        422,
    )


@router.post("/staff/users/{user_id}/active")
def set_user_active(
    user_id: Id, admin: AdminUser, session: SessionDep, active: Annotated[bool, Form()] = False
) -> Response:
    target = session.get(User, user_id)
    if target is None:
        raise NotFound(N_("There is no user with this id."))
    service.update(session=session, actor=admin, user=target, data=UserUpdate(is_active=active))
    return redirect("/staff/users")
