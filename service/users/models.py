"""Users, their roles, and the tokens that stand for a login (page sessions and API bearer tokens)."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import AfterValidator, ConfigDict, EmailStr, StringConstraints
from sqlmodel import Field, SQLModel

from service.db import Id, UTCDateTime, utcnow
from service.i18n import N_


class Role(StrEnum):
    admin = "admin"
    coordinator = "coordinator"
    communications = "communications"
    partner = "partner"


STAFF_ROLES = frozenset({Role.admin, Role.coordinator, Role.communications})
ROLE_LABELS = {
    Role.admin: N_("Administrator"),
    Role.coordinator: N_("Coordinator (crisis staff)"),
    Role.communications: N_("Communications (press office)"),
    Role.partner: N_("Partner organisation"),
}


def _lower(value: str) -> str:
    return value.strip().lower()


Email = Annotated[EmailStr, AfterValidator(_lower), StringConstraints(max_length=254)]
Language = Annotated[str, StringConstraints(pattern=r"^(bg|en)$")]
Password = Annotated[str, StringConstraints(min_length=10, max_length=200)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class UserBase(SQLModel):
    email: str = Field(max_length=254, sa_column_kwargs={"unique": True})
    full_name: str = Field(max_length=200)
    roles: list[Role] = Field(default_factory=list, sa_type=sa.JSON)
    organisation_id: int | None = Field(default=None, foreign_key="organisation.id", index=True)
    language: str = Field(default="bg", max_length=2)


class User(UserBase, table=True):
    __tablename__ = "user_account"

    id: int | None = Field(default=None, primary_key=True)
    roles: list[str] = Field(default_factory=list, sa_type=sa.JSON)  # Role values, as JSON reads them back
    password_hash: str = Field(max_length=200)
    is_active: bool = True
    failed_logins: int = 0
    last_failed_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    def has_role(self, *roles: Role) -> bool:
        return any(role in self.roles for role in roles)

    @property
    def is_staff(self) -> bool:
        return any(role in STAFF_ROLES for role in self.roles)

    def audit_snapshot(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"password_hash", "failed_logins", "last_failed_login_at"})


class UserCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    full_name: Name
    password: Password
    roles: list[Role] = Field(min_length=1)
    organisation_id: Id | None = None
    language: Language = "bg"


class UserUpdate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    full_name: Name | None = None
    password: Password | None = None
    roles: list[Role] | None = Field(default=None, min_length=1)
    organisation_id: Id | None = None
    language: Language | None = None
    is_active: bool | None = None


class PartnerUserCreate(SQLModel):
    """A login for one organisation's representative; the organisation comes from the path."""

    model_config = ConfigDict(extra="forbid")

    email: Email
    full_name: Name
    password: Password
    language: Language = "bg"


class UserPublic(UserBase):
    id: int
    is_active: bool
    created_at: datetime


class AuthToken(SQLModel, table=True):
    """A login: `session` for the pages' cookie, `api` for a bearer token. Only the hash is kept."""

    __tablename__ = "auth_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    kind: str = Field(max_length=10)
    user_id: int = Field(foreign_key="user_account.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
