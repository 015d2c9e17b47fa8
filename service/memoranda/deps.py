"""Loading a memorandum for a route, with the caller's right to it checked.

Coordinators (and admins) see every memorandum. A partner user sees the memoranda their organisation is
a party to, once issued; drafts and other organisations' memoranda are the same 404 as a missing id.
"""

from typing import Annotated

from fastapi import Depends
from sqlmodel import Session, select

from service.auth import CurrentUser
from service.db import Id, SessionDep
from service.errors import Forbidden, NotFound
from service.i18n import N_
from service.memoranda.models import Memorandum, MemorandumParty, MemorandumStatus
from service.memoranda.service import NO_SUCH_MEMORANDUM
from service.users.models import Role, User


def coordinates(user: User) -> bool:
    return user.has_role(Role.admin, Role.coordinator)


def require_coordinator(user: User) -> None:
    if not coordinates(user):
        raise Forbidden(N_("Your role does not allow this."))


def is_party(session: Session, memorandum: Memorandum, organisation_id: int | None) -> bool:
    if organisation_id is None:
        return False
    return (
        session.exec(
            select(MemorandumParty.id).where(
                MemorandumParty.memorandum_id == memorandum.id, MemorandumParty.organisation_id == organisation_id
            )
        ).first()
        is not None
    )


def load_visible(session: Session, user: User, memorandum_id: int) -> Memorandum:
    """The memorandum if `user` may see it; else 404 (or 403 for a role that sees no memoranda)."""
    if not coordinates(user) and not user.has_role(Role.partner):
        raise Forbidden(N_("Your role does not allow this."))
    memorandum = session.get(Memorandum, memorandum_id)
    if memorandum is None:
        raise NotFound(NO_SUCH_MEMORANDUM)
    if not coordinates(user) and (
        memorandum.status == MemorandumStatus.draft or not is_party(session, memorandum, user.organisation_id)
    ):
        raise NotFound(NO_SUCH_MEMORANDUM)
    return memorandum


def load_coordinated(session: Session, user: User, memorandum_id: int) -> Memorandum:
    require_coordinator(user)
    memorandum = session.get(Memorandum, memorandum_id)
    if memorandum is None:
        raise NotFound(NO_SUCH_MEMORANDUM)
    return memorandum


def visible_memorandum(memorandum_id: Id, user: CurrentUser, session: SessionDep) -> Memorandum:
    return load_visible(session, user, memorandum_id)


def coordinated_memorandum(memorandum_id: Id, user: CurrentUser, session: SessionDep) -> Memorandum:
    return load_coordinated(session, user, memorandum_id)


VisibleMemorandum = Annotated[Memorandum, Depends(visible_memorandum)]
CoordinatedMemorandum = Annotated[Memorandum, Depends(coordinated_memorandum)]
