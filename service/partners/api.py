"""JSON routes of the partner registry: `/api/v1/partners`."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from service.auth import CoordinatorUser, CurrentUser
from service.db import SessionDep
from service.errors import API_ERRORS, Forbidden
from service.i18n import N_
from service.limits import ListWindow
from service.pagination import Page, PageDep
from service.partners import service
from service.partners.deps import StaffOrganisation, VisibleContact, VisibleOrganisation
from service.partners.models import (
    ContactCreate,
    ContactPublic,
    ContactUpdate,
    OrganisationCreate,
    OrganisationKind,
    OrganisationProfileUpdate,
    OrganisationPublic,
    OrganisationUpdate,
    Sector,
    SuspendRequest,
    VerificationStatus,
)
from service.users import service as users
from service.users.models import PartnerUserCreate, Role, UserCreate, UserPublic
from service.web import csv_download

router = APIRouter(prefix="/api/v1/partners", tags=["partners"], responses=API_ERRORS)


def _filters(
    q: Annotated[str | None, Query(max_length=200, description="Part of the name, English name or EIK.")] = None,
    kind: OrganisationKind | None = None,
    sector: Sector | None = None,
    verification_status: VerificationStatus | None = None,
) -> service.OrganisationFilter:
    return service.OrganisationFilter(q=q, kind=kind, sector=sector, verification_status=verification_status)


Filters = Annotated[service.OrganisationFilter, Depends(_filters)]


@router.get("", response_model=Page[OrganisationPublic])
def list_partners(user: CoordinatorUser, session: SessionDep, filters: Filters, page: PageDep) -> Page:
    """Search the registry by name or EIK, kind, sector and verification status."""
    items, total = service.search(session=session, filters=filters, limit=page.limit, offset=page.offset)
    return Page(items=[OrganisationPublic.of(o) for o in items], total=total, limit=page.limit, offset=page.offset)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=OrganisationPublic)
def create_partner(
    data: OrganisationCreate,
    user: CoordinatorUser,
    session: SessionDep,
    allow_duplicate: Annotated[
        bool, Query(description="Register even if the name is near-identical to another.")
    ] = False,
) -> OrganisationPublic:
    """Register an organisation. 409 if its EIK is known, or its name near-identical to one already registered."""
    org = service.create(session=session, actor=user, data=data, allow_duplicate=allow_duplicate)
    return OrganisationPublic.of(org)


@router.get("/export.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def export_partners(user: CoordinatorUser, session: SessionDep, filters: Filters) -> Response:
    """The registry (with the same filters as the list) as CSV."""
    return csv_download(service.export_csv(session=session, filters=filters), "partners.csv")


@router.get("/{organisation_id}", response_model=OrganisationPublic)
def get_partner(org: VisibleOrganisation) -> OrganisationPublic:
    """One organisation: staff see any, a partner user only their own."""
    return OrganisationPublic.of(org)


_PROFILE_FIELDS = set(OrganisationProfileUpdate.model_fields)


@router.patch("/{organisation_id}", response_model=OrganisationPublic)
def update_partner(
    data: OrganisationUpdate, org: VisibleOrganisation, user: CurrentUser, session: SessionDep
) -> OrganisationPublic:
    """Change an organisation. Partner users may change their own profile, not its name, kind or EIK."""
    if not user.has_role(Role.admin, Role.coordinator):
        locked = data.model_fields_set - _PROFILE_FIELDS
        if locked:
            raise Forbidden(N_("Only staff may change these fields: {fields}."), fields=", ".join(sorted(locked)))
        data = OrganisationProfileUpdate.model_validate(data.model_dump(exclude_unset=True))
    return OrganisationPublic.of(service.update(session=session, actor=user, org=org, data=data))


@router.post("/{organisation_id}/verify", response_model=OrganisationPublic)
def verify_partner(org: StaffOrganisation, user: CoordinatorUser, session: SessionDep) -> OrganisationPublic:
    """Mark the organisation verified (again) by you, now."""
    return OrganisationPublic.of(service.verify(session=session, actor=user, org=org))


@router.post("/{organisation_id}/suspend", response_model=OrganisationPublic)
def suspend_partner(
    data: SuspendRequest, org: StaffOrganisation, user: CoordinatorUser, session: SessionDep
) -> OrganisationPublic:
    """Suspend the organisation, with the reason."""
    return OrganisationPublic.of(service.suspend(session=session, actor=user, org=org, reason=data.reason))


@router.get("/{organisation_id}/contacts", response_model=list[ContactPublic])
def list_contacts(org: VisibleOrganisation, window: ListWindow) -> list:
    """The organisation's contact people, the primary one first (`limit` of them, 500 at most)."""
    return org.contacts[window.offset : window.offset + window.limit]


@router.post("/{organisation_id}/contacts", status_code=status.HTTP_201_CREATED, response_model=ContactPublic)
def add_contact(data: ContactCreate, org: VisibleOrganisation, user: CurrentUser, session: SessionDep) -> object:
    """Add a contact person."""
    return service.add_contact(session=session, actor=user, org=org, data=data)


@router.patch("/{organisation_id}/contacts/{contact_id}", response_model=ContactPublic)
def update_contact(data: ContactUpdate, contact: VisibleContact, user: CurrentUser, session: SessionDep) -> object:
    """Change a contact person."""
    return service.update_contact(session=session, actor=user, contact=contact, data=data)


@router.delete("/{organisation_id}/contacts/{contact_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_contact(contact: VisibleContact, user: CurrentUser, session: SessionDep) -> Response:
    """Remove a contact person."""
    service.delete_contact(session=session, actor=user, contact=contact)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{organisation_id}/users", response_model=list[UserPublic])
def list_partner_users(org: StaffOrganisation, session: SessionDep, window: ListWindow) -> list:
    """The logins of the organisation's representatives (`limit` of them, 500 at most)."""
    return users.search(session=session, organisation_id=org.id, limit=window.limit, offset=window.offset)[0]


@router.post("/{organisation_id}/users", status_code=status.HTTP_201_CREATED, response_model=UserPublic)
def create_partner_user(
    data: PartnerUserCreate, org: StaffOrganisation, user: CoordinatorUser, session: SessionDep
) -> object:
    """Create a login for a representative of the organisation (role `partner`)."""
    create = UserCreate(**data.model_dump(), roles=[Role.partner], organisation_id=org.id)
    return users.create(session=session, actor=user, data=create)
