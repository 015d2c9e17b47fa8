"""HTML routes of the partner registry: staff pages under /staff/partners, the partner portal under /portal."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse

from service.auth import CoordinatorUser, CurrentUser, check_csrf
from service.db import Id, SessionDep
from service.errors import DomainError, Forbidden
from service.i18n import N_, gettext_for
from service.pagination import PageDep
from service.partners import service
from service.partners.deps import StaffOrganisation
from service.partners.models import (
    KIND_LABELS,
    SECTOR_LABELS,
    VERIFICATION_LABELS,
    ContactCreate,
    ContactUpdate,
    Organisation,
    OrganisationCreate,
    OrganisationKind,
    OrganisationProfileUpdate,
    OrganisationUpdate,
    Sector,
    SuspendRequest,
    VerificationStatus,
)
from service.users import service as users
from service.users.models import PartnerUserCreate, Role, User, UserCreate
from service.web import csv_download, form_values, parse_form, redirect, render

router = APIRouter(dependencies=[Depends(check_csrf)], include_in_schema=False)

LABELS = {"kinds": KIND_LABELS, "sectors": SECTOR_LABELS, "verification": VERIFICATION_LABELS}
ORG_LISTS = ("sectors",)
CONTACT_BOOLEANS = ("is_primary", "available_24_7")


def _errors_of(error: DomainError, request: Request) -> dict[str, str]:
    return {error.field or "__all__": error.text(gettext_for(request))}


def _org_values(org: Organisation) -> dict:
    return {**org.model_dump(), "sectors": [str(s) for s in org.sectors]}


# --- staff: the registry -------------------------------------------------------------------------


@router.get("/staff/partners", response_class=HTMLResponse)
def registry(
    request: Request,
    user: CoordinatorUser,
    session: SessionDep,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=200)] = None,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    sector: Annotated[str | None, Query(max_length=40)] = None,
    verification_status: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    # Unknown filter values from a hand-edited URL are ignored rather than refused.
    filters = service.OrganisationFilter(
        q=q,
        kind=kind if kind in OrganisationKind.__members__ else None,
        sector=sector if sector in Sector.__members__ else None,
        verification_status=verification_status if verification_status in VerificationStatus.__members__ else None,
    )
    items, total = service.search(session=session, filters=filters, limit=page.limit, offset=page.offset)
    return render(
        request,
        "staff/partners/list.html",
        {"orgs": items, "total": total, "page": page, "filters": filters, "labels": LABELS,
         "query": request.url.query},
    )  # fmt: skip


@router.get("/staff/partners/export.csv")
def registry_csv(user: CoordinatorUser, session: SessionDep, request: Request) -> Response:
    params = request.query_params
    filters = service.OrganisationFilter(
        q=params.get("q"),
        kind=params.get("kind") if params.get("kind") in OrganisationKind.__members__ else None,
        sector=params.get("sector") if params.get("sector") in Sector.__members__ else None,
        verification_status=params.get("verification_status")
        if params.get("verification_status") in VerificationStatus.__members__
        else None,
    )
    return csv_download(service.export_csv(session=session, filters=filters), "partners.csv")


@router.get("/staff/partners/new", response_class=HTMLResponse)
def new_organisation(request: Request, user: CoordinatorUser) -> Response:
    return render(request, "staff/partners/form.html", {"labels": LABELS, "org": None})


@router.post("/staff/partners/new", response_class=HTMLResponse)
async def create_organisation(request: Request, user: CoordinatorUser, session: SessionDep) -> Response:
    form = await request.form()
    values = form_values(form, lists=ORG_LISTS, booleans=("allow_duplicate",))
    allow_duplicate = values.pop("allow_duplicate")
    data, errors = parse_form(OrganisationCreate, values, gettext_for(request))
    duplicates = []
    if data is not None:
        try:
            org = service.create(session=session, actor=user, data=data, allow_duplicate=allow_duplicate)
        except service.PossibleDuplicate as error:
            errors, duplicates = _errors_of(error, request), error.matches
        except DomainError as error:
            errors = _errors_of(error, request)
        else:
            return redirect(f"/staff/partners/{org.id}?created=1")
    return render(
        request,
        "staff/partners/form.html",
        {"labels": LABELS, "org": None, "values": values, "errors": errors, "duplicates": duplicates},
        status_code=409 if duplicates else 422,
    )


@router.get("/staff/partners/{organisation_id}", response_class=HTMLResponse)
def organisation_detail(
    request: Request, org: StaffOrganisation, user: CoordinatorUser, session: SessionDep
) -> Response:
    members = users.search(session=session, organisation_id=org.id, limit=500)[0]
    verifier = session.get(User, org.verified_by_id) if org.verified_by_id else None
    return render(
        request,
        "staff/partners/detail.html",
        {
            "org": org,
            "labels": LABELS,
            "members": members,
            "verifier": verifier,
            "created": "created" in request.query_params,
        },
    )


@router.get("/staff/partners/{organisation_id}/edit", response_class=HTMLResponse)
def edit_organisation(request: Request, org: StaffOrganisation, user: CoordinatorUser) -> Response:
    return render(request, "staff/partners/form.html", {"labels": LABELS, "org": org, "values": _org_values(org)})


@router.post("/staff/partners/{organisation_id}/edit", response_class=HTMLResponse)
async def update_organisation(
    request: Request, org: StaffOrganisation, user: CoordinatorUser, session: SessionDep
) -> Response:
    form = await request.form()
    values = form_values(form, lists=ORG_LISTS)
    # A field left blank in the form clears it.
    complete = {field: values.get(field) for field in OrganisationUpdate.model_fields}
    complete["sectors"] = values["sectors"]
    data, errors = parse_form(OrganisationUpdate, complete, gettext_for(request))
    if data is not None:
        try:
            service.update(session=session, actor=user, org=org, data=data)
        except DomainError as error:
            session.rollback()
            errors = _errors_of(error, request)
        else:
            return redirect(f"/staff/partners/{org.id}")
    return render(
        request, "staff/partners/form.html", {"labels": LABELS, "org": org, "values": values, "errors": errors}, 422
    )


@router.post("/staff/partners/{organisation_id}/verify")
def verify_organisation(org: StaffOrganisation, user: CoordinatorUser, session: SessionDep) -> Response:
    service.verify(session=session, actor=user, org=org)
    return redirect(f"/staff/partners/{org.id}")


@router.post("/staff/partners/{organisation_id}/suspend", response_class=HTMLResponse)
async def suspend_organisation(
    request: Request, org: StaffOrganisation, user: CoordinatorUser, session: SessionDep
) -> Response:
    values = form_values(await request.form())
    data, errors = parse_form(SuspendRequest, values, gettext_for(request))
    if data is not None:
        try:
            service.suspend(session=session, actor=user, org=org, reason=data.reason)
        except DomainError as error:
            errors = _errors_of(error, request)
        else:
            return redirect(f"/staff/partners/{org.id}")
    return _detail_again(request, session, org, {"suspend": values, "suspend_errors": errors})


def _detail_again(request: Request, session: SessionDep, org: Organisation, context: dict) -> Response:
    members = users.search(session=session, organisation_id=org.id, limit=500)[0]
    verifier = session.get(User, org.verified_by_id) if org.verified_by_id else None
    return render(
        request, "staff/partners/detail.html",
        {"org": org, "labels": LABELS, "members": members, "verifier": verifier, **context}, 422,
    )  # fmt: skip


@router.post("/staff/partners/{organisation_id}/contacts", response_class=HTMLResponse)
async def staff_add_contact(
    request: Request, org: StaffOrganisation, user: CoordinatorUser, session: SessionDep
) -> Response:
    values = form_values(await request.form(), booleans=CONTACT_BOOLEANS)
    data, errors = parse_form(ContactCreate, values, gettext_for(request))
    if data is None:
        return _detail_again(request, session, org, {"contact": values, "contact_errors": errors})
    service.add_contact(session=session, actor=user, org=org, data=data)
    return redirect(f"/staff/partners/{org.id}#contacts")


@router.post("/staff/partners/{organisation_id}/contacts/{contact_id}/delete")
def staff_delete_contact(
    contact_id: Id, org: StaffOrganisation, user: CoordinatorUser, session: SessionDep
) -> Response:
    contact = service.get_contact(session=session, org=org, contact_id=contact_id)
    service.delete_contact(session=session, actor=user, contact=contact)
    return redirect(f"/staff/partners/{org.id}#contacts")


@router.post("/staff/partners/{organisation_id}/users", response_class=HTMLResponse)
async def staff_create_partner_user(
    request: Request, org: StaffOrganisation, user: CoordinatorUser, session: SessionDep
) -> Response:
    values = form_values(await request.form())
    data, errors = parse_form(PartnerUserCreate, values, gettext_for(request))
    if data is not None:
        try:
            users.create(
                session=session,
                actor=user,
                data=UserCreate(**data.model_dump(), roles=[Role.partner], organisation_id=org.id),
            )
        except DomainError as error:
            errors = _errors_of(error, request)
        else:
            return redirect(f"/staff/partners/{org.id}#users")
    values.pop("password", None)
    return _detail_again(request, session, org, {"new_user": values, "user_errors": errors})


# --- the partner portal: a partner user's own organisation -------------------------------------------


def own_organisation(user: CurrentUser, session: SessionDep) -> Organisation:
    """The organisation a partner user acts for."""
    if not user.has_role(Role.partner) or user.organisation_id is None:
        raise Forbidden(N_("The partner portal is for partner organisations' users."))
    return session.get(Organisation, user.organisation_id)


OwnOrganisation = Annotated[Organisation, Depends(own_organisation)]


@router.get("/portal", response_class=HTMLResponse)
def portal_home(request: Request, org: OwnOrganisation) -> Response:
    return render(request, "portal/home.html", {"org": org, "labels": LABELS, "saved": "saved" in request.query_params})


@router.get("/portal/organisation/edit", response_class=HTMLResponse)
def portal_edit(request: Request, org: OwnOrganisation) -> Response:
    return render(request, "portal/edit.html", {"org": org, "labels": LABELS, "values": _org_values(org)})


@router.post("/portal/organisation/edit", response_class=HTMLResponse)
async def portal_update(request: Request, org: OwnOrganisation, user: CurrentUser, session: SessionDep) -> Response:
    values = form_values(await request.form(), lists=ORG_LISTS)
    complete = {field: values.get(field) for field in OrganisationProfileUpdate.model_fields}
    complete["sectors"] = values["sectors"]
    data, errors = parse_form(OrganisationProfileUpdate, complete, gettext_for(request))
    if data is not None:
        service.update(session=session, actor=user, org=org, data=data)
        return redirect("/portal?saved=1")
    return render(request, "portal/edit.html", {"org": org, "labels": LABELS, "values": values, "errors": errors}, 422)


@router.post("/portal/contacts", response_class=HTMLResponse)
async def portal_add_contact(
    request: Request, org: OwnOrganisation, user: CurrentUser, session: SessionDep
) -> Response:
    values = form_values(await request.form(), booleans=CONTACT_BOOLEANS)
    data, errors = parse_form(ContactCreate, values, gettext_for(request))
    if data is None:
        return render(
            request,
            "portal/home.html",
            {"org": org, "labels": LABELS, "contact": values, "contact_errors": errors},
            422,
        )
    service.add_contact(session=session, actor=user, org=org, data=data)
    return redirect("/portal#contacts")


@router.get("/portal/contacts/{contact_id}/edit", response_class=HTMLResponse)
def portal_edit_contact(request: Request, contact_id: Id, org: OwnOrganisation, session: SessionDep) -> Response:
    contact = service.get_contact(session=session, org=org, contact_id=contact_id)
    return render(request, "portal/contact.html", {"org": org, "contact": contact, "values": contact.model_dump()})


@router.post("/portal/contacts/{contact_id}/edit", response_class=HTMLResponse)
async def portal_update_contact(
    request: Request, contact_id: Id, org: OwnOrganisation, user: CurrentUser, session: SessionDep
) -> Response:
    contact = service.get_contact(session=session, org=org, contact_id=contact_id)
    values = form_values(await request.form(), booleans=CONTACT_BOOLEANS)
    complete = {field: values.get(field) for field in ContactUpdate.model_fields}
    complete["role"] = values.get("role", "")
    data, errors = parse_form(ContactUpdate, complete, gettext_for(request))
    if data is not None:
        try:
            service.update_contact(session=session, actor=user, contact=contact, data=data)
        except DomainError as error:
            session.rollback()
            errors = _errors_of(error, request)
        else:
            return redirect("/portal#contacts")
    return render(
        request, "portal/contact.html", {"org": org, "contact": contact, "values": values, "errors": errors}, 422
    )


@router.post("/portal/contacts/{contact_id}/delete")
def portal_delete_contact(contact_id: Id, org: OwnOrganisation, user: CurrentUser, session: SessionDep) -> Response:
    contact = service.get_contact(session=session, org=org, contact_id=contact_id)
    service.delete_contact(session=session, actor=user, contact=contact)
    return redirect("/portal#contacts")
