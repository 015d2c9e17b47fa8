"""Loading an organisation for a route, with the caller's right to it checked."""

from typing import Annotated

from fastapi import Depends

from service.auth import CoordinatorUser, CurrentUser
from service.db import Id, SessionDep
from service.errors import Forbidden, NotFound
from service.i18n import N_
from service.partners import service
from service.partners.models import Contact, Organisation
from service.users.models import Role

NO_SUCH_ORGANISATION = N_("There is no organisation with this id.")


def staff_organisation(organisation_id: Id, user: CoordinatorUser, session: SessionDep) -> Organisation:
    """The organisation, for staff who manage partners."""
    org = service.get(session=session, organisation_id=organisation_id)
    if org is None:
        raise NotFound(NO_SUCH_ORGANISATION)
    return org


def visible_organisation(organisation_id: Id, user: CurrentUser, session: SessionDep) -> Organisation:
    """The organisation, for its own partner users and for staff who manage partners.

    Another organisation's partner gets the same 404 as for a missing one: ids reveal nothing.
    """
    if not user.has_role(Role.admin, Role.coordinator):
        if not user.has_role(Role.partner):
            raise Forbidden(N_("Your role does not allow this."))
        if user.organisation_id != organisation_id:
            raise NotFound(NO_SUCH_ORGANISATION)
    org = service.get(session=session, organisation_id=organisation_id)
    if org is None:
        raise NotFound(NO_SUCH_ORGANISATION)
    return org


def visible_contact(
    contact_id: Id, org: Annotated[Organisation, Depends(visible_organisation)], session: SessionDep
) -> Contact:
    """A contact of an organisation the caller may see."""
    return service.get_contact(session=session, org=org, contact_id=contact_id)


StaffOrganisation = Annotated[Organisation, Depends(staff_organisation)]
VisibleOrganisation = Annotated[Organisation, Depends(visible_organisation)]
VisibleContact = Annotated[Contact, Depends(visible_contact)]
