"""Loading emergencies, needs, pledges and offers for a route, with the caller's right to them checked.

Staff who coordinate see everything; other staff may read emergencies and needs. A partner user sees
active emergencies, their open needs, and their own organisation's pledges and offers; anything else is
the same 404 as a missing id, so ids reveal nothing.
"""

from typing import Annotated

from fastapi import Depends
from sqlalchemy import bindparam
from sqlalchemy.orm import lazyload
from sqlmodel import Session, select

from service.auth import LOADED_ORGANISATION, CurrentUser
from service.db import Id, SessionDep
from service.emergencies.models import Emergency, EmergencyStatus, Need, NeedStatus, Offer, Pledge
from service.emergencies.service import NO_SUCH_NEED
from service.errors import Forbidden, NotFound
from service.i18n import N_
from service.partners.models import Organisation
from service.users.models import Role, User

NO_SUCH_EMERGENCY = N_("There is no emergency with this id.")
NO_SUCH_PLEDGE = N_("There is no pledge with this id.")
NO_SUCH_OFFER = N_("There is no offer with this id.")


def coordinates(user: User) -> bool:
    return user.has_role(Role.admin, Role.coordinator)


def partner_organisation(user: User, session: Session) -> Organisation:
    """The organisation a partner user acts for, or 403 for anyone else."""
    if not user.has_role(Role.partner) or user.organisation_id is None:
        raise Forbidden(N_("Your role does not allow this."))
    # The session's identity map holds a row only while something refers to it, so a route that checks
    # the organisation in a dependency and uses it again in its body would load it twice; it is kept for
    # the session's life instead (the login's lookup by token already loaded it). Its sectors load when
    # read, not with every pledge.
    kept = session.info.get(LOADED_ORGANISATION)
    if kept is None or kept not in session or kept.id != user.organisation_id:
        kept = session.get(Organisation, user.organisation_id, options=[lazyload(Organisation.sector_rows)])
        session.info[LOADED_ORGANISATION] = kept
    return kept


def visible_emergency(emergency_id: Id, user: CurrentUser, session: SessionDep) -> Emergency:
    emergency = session.get(Emergency, emergency_id)
    if emergency is None or (not user.is_staff and emergency.status != EmergencyStatus.active):
        raise NotFound(NO_SUCH_EMERGENCY)
    if not user.is_staff:
        partner_organisation(user, session)
    return emergency


def coordinated_emergency(emergency_id: Id, user: CurrentUser, session: SessionDep) -> Emergency:
    if not coordinates(user):
        raise Forbidden(N_("Your role does not allow this."))
    emergency = session.get(Emergency, emergency_id)
    if emergency is None:
        raise NotFound(NO_SUCH_EMERGENCY)
    return emergency


def visible_need(need_id: Id, user: CurrentUser, session: SessionDep) -> Need:
    if user.is_staff:
        need = session.get(Need, need_id)
    else:
        partner_organisation(user, session)
        need = session.exec(_OPEN_NEED_OF_ACTIVE_EMERGENCY, params={"need_id": need_id}).first()
    if need is None:
        raise NotFound(NO_SUCH_NEED)
    return need


# Built once: a partner pledging asks it with every pledge.
_OPEN_NEED_OF_ACTIVE_EMERGENCY = (
    select(Need)
    .join(Emergency, Emergency.id == Need.emergency_id)
    .where(
        Need.id == bindparam("need_id"),
        Need.status == NeedStatus.open,
        Emergency.status == EmergencyStatus.active,
    )
)


def coordinated_need(need_id: Id, user: CurrentUser, session: SessionDep) -> Need:
    if not coordinates(user):
        raise Forbidden(N_("Your role does not allow this."))
    need = session.get(Need, need_id)
    if need is None:
        raise NotFound(NO_SUCH_NEED)
    return need


def visible_pledge(pledge_id: Id, user: CurrentUser, session: SessionDep) -> Pledge:
    """A pledge, for coordinators or for its own organisation's users."""
    pledge = session.get(Pledge, pledge_id)
    if not coordinates(user):
        organisation = partner_organisation(user, session)
        if pledge is not None and pledge.organisation_id != organisation.id:
            pledge = None
    if pledge is None:
        raise NotFound(NO_SUCH_PLEDGE)
    return pledge


def coordinated_pledge(pledge_id: Id, user: CurrentUser, session: SessionDep) -> Pledge:
    if not coordinates(user):
        raise Forbidden(N_("Your role does not allow this."))
    pledge = session.get(Pledge, pledge_id)
    if pledge is None:
        raise NotFound(NO_SUCH_PLEDGE)
    return pledge


def own_pledge(pledge_id: Id, user: CurrentUser, session: SessionDep) -> Pledge:
    """A pledge of the partner user's own organisation (withdrawing is the partner's act)."""
    organisation = partner_organisation(user, session)
    pledge = session.get(Pledge, pledge_id)
    if pledge is None or pledge.organisation_id != organisation.id:
        raise NotFound(NO_SUCH_PLEDGE)
    return pledge


def coordinated_offer(offer_id: Id, user: CurrentUser, session: SessionDep) -> Offer:
    if not coordinates(user):
        raise Forbidden(N_("Your role does not allow this."))
    offer = session.get(Offer, offer_id)
    if offer is None:
        raise NotFound(NO_SUCH_OFFER)
    return offer


VisibleEmergency = Annotated[Emergency, Depends(visible_emergency)]
CoordinatedEmergency = Annotated[Emergency, Depends(coordinated_emergency)]
VisibleNeed = Annotated[Need, Depends(visible_need)]
CoordinatedNeed = Annotated[Need, Depends(coordinated_need)]
VisiblePledge = Annotated[Pledge, Depends(visible_pledge)]
CoordinatedPledge = Annotated[Pledge, Depends(coordinated_pledge)]
OwnPledge = Annotated[Pledge, Depends(own_pledge)]
CoordinatedOffer = Annotated[Offer, Depends(coordinated_offer)]
