"""The partner portal's logistics pages: open needs to pledge against, the organisation's pledges and offers.

Only a partner user acting for an organisation comes in (403 for anyone else); a need a partner cannot see
(a draft, a closed one, one of an emergency stood down) and another organisation's pledge are 404.
"""

from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlmodel import Session, col, select
from starlette.datastructures import FormData

from service.auth import CurrentUser, check_csrf
from service.db import Id, SessionDep, utcnow
from service.emergencies import service
from service.emergencies.coverage import delivered_by_pledge
from service.emergencies.deps import NO_SUCH_NEED, OwnPledge
from service.emergencies.models import (
    COVERAGE_LABELS,
    OFFER_STATUS_LABELS,
    PLEDGE_STATUS_LABELS,
    PRIORITY_LABELS,
    UNIT_LABELS,
    WHOLE_UNITS,
    Emergency,
    EmergencyStatus,
    Need,
    NeedStatus,
    OfferCreate,
    Pledge,
    PledgeCreate,
    PledgeStatus,
)
from service.errors import DomainError, NotFound
from service.i18n import N_, gettext_for, local_input_value
from service.pagination import PageDep, PageParams
from service.partners.models import SECTOR_LABELS, Organisation, VerificationStatus
from service.partners.pages import OwnOrganisation
from service.web import FormDep, form_values, parse_typed_form, redirect, render

router = APIRouter(dependencies=[Depends(check_csrf)], include_in_schema=False)

LABELS = {
    "units": UNIT_LABELS,
    "priorities": PRIORITY_LABELS,
    "coverage": COVERAGE_LABELS,
    "pledge_status": PLEDGE_STATUS_LABELS,
    "offer_status": OFFER_STATUS_LABELS,
    "sectors": SECTOR_LABELS,
}
# Pledges a partner may still take back, and the ones on their way to the need.
WITHDRAWABLE = (PledgeStatus.offered, PledgeStatus.accepted, PledgeStatus.in_transit)
UNDER_WAY = (PledgeStatus.accepted, PledgeStatus.in_transit)
DONE_MESSAGES = {
    "pledged": N_("Your pledge is recorded. The crisis staff will accept or decline it; you will get an e-mail."),
    "withdrawn": N_("The pledge is withdrawn."),
    "dispatched": N_("The pledge is marked as dispatched."),
    "offered": N_("Your offer is recorded. The crisis staff will match it with a need or tell you why not."),
}


def portal_need(need_id: Id, org: OwnOrganisation, session: SessionDep) -> Need:
    """An open need of an active emergency; any other need is as missing as one that never existed."""
    need = session.get(Need, need_id)
    emergency = session.get(Emergency, need.emergency_id) if need else None
    if need is None or need.status != NeedStatus.open or emergency.status != EmergencyStatus.active:
        raise NotFound(NO_SUCH_NEED)
    return need


PortalNeed = Annotated[Need, Depends(portal_need)]


def _suspended(org: Organisation) -> bool:
    return org.verification_status == VerificationStatus.suspended


def _done(request: Request) -> str | None:
    key = request.query_params.get("done")
    return DONE_MESSAGES.get(key) if key else None


def _page_of(values: dict[str, Any]) -> PageParams:
    """The list page a form was sent from (hidden fields), so the answer shows that page again."""

    def number(name: str, default: int, low: int, high: int) -> int:
        raw = str(values.get(name, ""))
        return int(raw) if raw.isdigit() and low <= int(raw) <= high else default

    return PageParams(limit=number("limit", 50, 1, 500), offset=number("offset", 0, 0, 10_000_000))


# --- open needs and pledging -----------------------------------------------------------------------------


def _needs_page(
    request: Request, org: Organisation, session: Session, *, form: dict | None = None, status_code: int = 200
) -> Response:
    views = service.open_needs_for_partner(session=session, organisation=org)
    emergency_ids = {v.need.emergency_id for v in views}
    emergencies = {e.id: e for e in session.exec(select(Emergency).where(col(Emergency.id).in_(emergency_ids)))}
    now = utcnow()
    default_deliver_by = {
        v.need.id: local_input_value(v.need.needed_by) if v.need.needed_by and v.need.needed_by > now else ""
        for v in views
    }
    return render(
        request,
        "portal/needs.html",
        {
            "org": org,
            "views": views,
            "emergencies": emergencies,
            "own_sectors": set(org.sectors),
            "whole_units": WHOLE_UNITS,
            "default_deliver_by": default_deliver_by,
            "suspended": _suspended(org),
            "form": form or {},
            "labels": LABELS,
        },
        status_code,
    )


@router.get("/portal/needs", response_class=HTMLResponse)
def needs(request: Request, org: OwnOrganisation, session: SessionDep) -> Response:
    return _needs_page(request, org, session)


def _parse(
    schema: type[BaseModel], values: dict[str, Any], request: Request, *, times: tuple[str, ...] = ()
) -> tuple[Any, dict[str, str]]:
    """The schema from the form's own fields (a partner never names the organisation: it is theirs)."""
    data = {f: values[f] for f in schema.model_fields if f in values and f != "organisation_id"}
    return parse_typed_form(schema, data, request, times=times, quantities=("quantity",))


@router.post("/portal/needs/{need_id}/pledge", response_class=HTMLResponse)
def pledge(
    request: Request, form: FormDep, org: OwnOrganisation, need: PortalNeed, user: CurrentUser, session: SessionDep
) -> Response:
    values = form_values(form)
    gettext = gettext_for(request)
    data, errors = _parse(PledgeCreate, values, request, times=("available_from", "deliver_by"))
    status_code = 422
    if data is not None:
        try:
            created = service.create_pledge(session=session, actor=user, need_id=need.id, organisation=org, data=data)
        except DomainError as error:
            session.rollback()  # let go of the need's lock before the page is read again
            # Too much for what is left is the quantity's fault: the message goes beside that field.
            field = error.field or ("quantity" if isinstance(error, service.PledgeExceedsNeed) else "__all__")
            errors, status_code = {field: error.text(gettext)}, error.status_code
        else:
            return redirect(f"/portal/pledges?done=pledged#pledge-{created.id}")
    form_state = {"need_id": need.id, "values": values, "errors": errors}
    return _needs_page(request, org, session, form=form_state, status_code=status_code)


# --- the organisation's pledges --------------------------------------------------------------------------


def _pledge_rows(session: Session, pledges: list[Pledge]) -> list[dict[str, Any]]:
    """Each pledge with its need, emergency, what has arrived and whether it is overdue (four queries)."""
    need_ids = {p.need_id for p in pledges}
    needs_by_id = {n.id: n for n in session.exec(select(Need).where(col(Need.id).in_(need_ids)))}
    emergency_ids = {n.emergency_id for n in needs_by_id.values()}
    emergencies = {e.id: e for e in session.exec(select(Emergency).where(col(Emergency.id).in_(emergency_ids)))}
    delivered = delivered_by_pledge(session=session, pledge_ids=[p.id for p in pledges])
    now = utcnow()
    rows = []
    for p in pledges:
        need = needs_by_id[p.need_id]
        arrived = delivered.get(p.id, Decimal(0))
        # The job flags overdue pledges every so often; the page need not wait for it.
        overdue = p.status in UNDER_WAY and arrived == 0 and (p.overdue_since is not None or p.deliver_by < now)
        rows.append(
            {
                "pledge": p,
                "need": need,
                "emergency": emergencies[need.emergency_id],
                "delivered": arrived,
                "overdue": overdue,
                "can_withdraw": p.status in WITHDRAWABLE and arrived == 0,
                "can_dispatch": p.status == PledgeStatus.accepted,
            }
        )
    return rows


def _pledges_page(
    request: Request,
    org: Organisation,
    session: Session,
    page: PageParams,
    *,
    refusal: dict | None = None,
    status_code: int = 200,
) -> Response:
    pledges, total = service.list_pledges(session=session, organisation_id=org.id, limit=page.limit, offset=page.offset)
    return render(
        request,
        "portal/pledges.html",
        {
            "org": org,
            "rows": _pledge_rows(session, pledges),
            "total": total,
            "page": page,
            "done": _done(request) if refusal is None else None,
            "refusal": refusal,
            "labels": LABELS,
        },
        status_code,
    )


@router.get("/portal/pledges", response_class=HTMLResponse)
def pledges(request: Request, org: OwnOrganisation, session: SessionDep, page: PageDep) -> Response:
    return _pledges_page(request, org, session, page)


def _pledge_action(
    request: Request,
    form: FormData,
    org: Organisation,
    pledge: Pledge,
    session: Session,
    act: Callable[[], object],
    done: str,
) -> Response:
    """Runs `act` on the pledge and shows it; a refusal shows the same list page again with the message beside it."""
    page = _page_of(form_values(form))
    try:
        act()
    except DomainError as error:
        session.rollback()
        refusal = {"pledge_id": pledge.id, "message": error.text(gettext_for(request))}
        return _pledges_page(request, org, session, page, refusal=refusal, status_code=error.status_code)
    same_page = f"&limit={page.limit}&offset={page.offset}" if (page.limit, page.offset) != (50, 0) else ""
    return redirect(f"/portal/pledges?done={done}{same_page}#pledge-{pledge.id}")


@router.post("/portal/pledges/{pledge_id}/withdraw", response_class=HTMLResponse)
def withdraw(
    request: Request, form: FormDep, org: OwnOrganisation, pledge: OwnPledge, user: CurrentUser, session: SessionDep
) -> Response:
    act = partial(service.withdraw, session=session, actor=user, pledge=pledge)
    return _pledge_action(request, form, org, pledge, session, act, "withdrawn")


@router.post("/portal/pledges/{pledge_id}/dispatch", response_class=HTMLResponse)
def dispatch(
    request: Request, form: FormDep, org: OwnOrganisation, pledge: OwnPledge, user: CurrentUser, session: SessionDep
) -> Response:
    act = partial(service.dispatch, session=session, actor=user, pledge=pledge)
    return _pledge_action(request, form, org, pledge, session, act, "dispatched")


# --- unsolicited offers ----------------------------------------------------------------------------------


def _offers_page(
    request: Request,
    org: Organisation,
    session: Session,
    page: PageParams,
    *,
    values: dict | None = None,
    errors: dict | None = None,
    status_code: int = 200,
) -> Response:
    offers, total = service.list_offers(session=session, organisation_id=org.id, limit=page.limit, offset=page.offset)
    return render(
        request,
        "portal/offers.html",
        {
            "org": org,
            "offers": offers,
            "total": total,
            "page": page,
            "suspended": _suspended(org),
            "done": _done(request) if errors is None else None,
            "values": values or {},
            "errors": errors or {},
            "labels": LABELS,
        },
        status_code,
    )


@router.get("/portal/offers", response_class=HTMLResponse)
def offers(request: Request, org: OwnOrganisation, session: SessionDep, page: PageDep) -> Response:
    return _offers_page(request, org, session, page)


@router.post("/portal/offers", response_class=HTMLResponse)
def make_offer(
    request: Request, form: FormDep, org: OwnOrganisation, user: CurrentUser, session: SessionDep, page: PageDep
) -> Response:
    values = form_values(form)
    gettext = gettext_for(request)
    data, errors = _parse(OfferCreate, values, request)
    status_code = 422
    if data is not None:
        try:
            offer = service.create_offer(session=session, actor=user, organisation=org, data=data)
        except DomainError as error:
            session.rollback()
            errors, status_code = {error.field or "__all__": error.text(gettext)}, error.status_code
        else:
            return redirect(f"/portal/offers?done=offered#offer-{offer.id}")
    return _offers_page(request, org, session, page, values=values, errors=errors, status_code=status_code)
