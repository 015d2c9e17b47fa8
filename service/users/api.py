"""JSON routes for accounts (`/api/v1/users`, admin only) and logging in (`/api/v1/auth/token`)."""

from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from service import limits
from service.auth import AdminUser, CurrentUser, authenticate, issue_token
from service.config import settings
from service.db import Id, SessionDep
from service.errors import API_ERRORS, NotFound, error_responses
from service.i18n import N_
from service.pagination import Page, PageDep
from service.users import service
from service.users.models import User, UserCreate, UserPublic, UserUpdate

auth_router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=error_responses(400, 401, 413, 422, 429))
router = APIRouter(prefix="/api/v1/users", tags=["users"], responses=API_ERRORS)


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105
    expires_in: int


@auth_router.post("/token", response_model=Token, dependencies=[Depends(limits.login_rate)])
def login_for_token(form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep) -> Token:
    """OAuth2 password flow: `username` is the e-mail. Repeated failures are slowed down, then locked out;
    too many attempts from one address, whatever the accounts, are refused for a while (429)."""
    user = authenticate(session=session, email=form.username, password=form.password)
    token = issue_token(session=session, user=user, kind="api")
    return Token(access_token=token, expires_in=settings.token_hours * 3600)


def user_or_404(user_id: Id, admin: AdminUser, session: SessionDep) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(N_("There is no user with this id."))
    return user


TargetUser = Annotated[User, Depends(user_or_404)]


@router.get("", response_model=Page[UserPublic])
def list_users(admin: AdminUser, session: SessionDep, page: PageDep) -> Page:
    """All accounts, by e-mail."""
    items, total = service.search(session=session, limit=page.limit, offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UserPublic)
def create_user(data: UserCreate, admin: AdminUser, session: SessionDep) -> User:
    """Create an account: staff roles, or `partner` with the organisation it acts for."""
    return service.create(session=session, actor=admin, data=data)


@router.get("/me", response_model=UserPublic)
def who_am_i(user: CurrentUser) -> User:
    """The account the token belongs to."""
    return user


@router.get("/{user_id}", response_model=UserPublic)
def get_user(target: TargetUser) -> User:
    """One account."""
    return target


@router.patch("/{user_id}", response_model=UserPublic)
def update_user(data: UserUpdate, target: TargetUser, admin: AdminUser, session: SessionDep) -> User:
    """Change an account: name, password, roles, language, or deactivate it."""
    return service.update(session=session, actor=admin, user=target, data=data)
