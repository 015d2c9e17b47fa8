"""The staff's logistics pages: the emergencies list, each emergency's coverage board, a need with its
pledges, and the HXL exports (cookie login, the same CSV as the API's).

Coordinators and administrators act here; other staff may read the list of emergencies only.
"""

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Annotated, Literal

from babel.dates import format_timedelta
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session, col, select

from service.auth import CoordinatorUser, CurrentUser, check_csrf, require_roles
from service.db import SessionDep, utcnow
from service.emergencies import hxl, service
from service.emergencies.coverage import coverage_for, delivered_by_pledge
from service.emergencies.deps import CoordinatedEmergency, CoordinatedNeed, CoordinatedOffer, CoordinatedPledge
from service.emergencies.models import (
    COVERAGE_LABELS,
    EMERGENCY_STATUS_LABELS,
    KIND_LABELS,
    NEED_STATUS_LABELS,
    PLEDGE_STATUS_LABELS,
    PRIORITY_LABELS,
    SEVERITY_LABELS,
    UNIT_LABELS,
    AcceptBody,
    Emergency,
    EmergencyCreate,
    Need,
    NeedCreate,
    NeedStatus,
    NeedUpdate,
    OfferConvert,
    OfferStatus,
    Pledge,
    PledgeStatus,
    ReasonBody,
    Receipt,
    ReceiptCreate,
)
from service.errors import DomainError
from service.i18n import (
    N_,
    babel_locale,
    format_number,
    gettext_for,
    language_of,
    local_input_value,
)
from service.pagination import PageDep, PageParams
from service.partners.models import SECTOR_LABELS, Organisation
from service.users.models import Role, User
from service.web import FormDep, csv_download, form_values, parse_form, parse_typed_form, redirect, render

router = APIRouter(dependencies=[Depends(check_csrf)], include_in_schema=False)

StaffUser = Annotated[User, Depends(require_roles(Role.coordinator, Role.communications))]

LABELS = {
    "kinds": KIND_LABELS,
    "severities": SEVERITY_LABELS,
    "emergency_status": EMERGENCY_STATUS_LABELS,
    "units": UNIT_LABELS,
    "priorities": PRIORITY_LABELS,
    "need_status": NEED_STATUS_LABELS,
    "pledge_status": PLEDGE_STATUS_LABELS,
    "coverage": COVERAGE_LABELS,
    "sectors": SECTOR_LABELS,
}
CURRENT_NEED = (NeedStatus.draft, NeedStatus.open)
UNDER_WAY = (PledgeStatus.accepted, PledgeStatus.in_transit)
CONFIRM_CLOSE = N_("Tick the box to confirm that the open needs close with the emergency.")
NOT_THIS_EMERGENCY = N_("Choose one of this emergency's open needs.")
TRIAGE_LIMIT = 200
# The longest overdue first; past a hundred rows a list is no longer read, and the count says how many.
OVERDUE_SHOWN = 100


def _errors_of(error: DomainError, request: Request) -> dict[str, str]:
    return {error.field or "__all__": error.text(gettext_for(request))}


def _organisations(session: Session, ids: set[int]) -> dict[int, Organisation]:
    if not ids:
        return {}
    return {o.id: o for o in session.exec(select(Organisation).where(col(Organisation.id).in_(ids)))}


def _overdue_for(request: Request, now: datetime):
    locale = babel_locale(language_of(request))
    return lambda since: format_timedelta(now - since, locale=locale)


def _offer_targets(request: Request, views: list[service.NeedView]) -> dict[str, list[tuple[int, str]]]:
    """Where an offer can go, by unit (it converts only into its own unit): open needs still short of pledges,
    each with its option text, made once here rather than once per offer in the template."""
    gettext, language = gettext_for(request), language_of(request)
    option = gettext(N_("{item}: {remaining} {unit} still open"))
    targets: dict[str, list[tuple[int, str]]] = {}
    for view in views:
        need, remaining = view.need, view.coverage.remaining
        if need.status == NeedStatus.open and remaining > 0:
            text = option.format(
                item=need.item_name, remaining=format_number(remaining, language), unit=gettext(UNIT_LABELS[need.unit])
            )
            targets.setdefault(need.unit, []).append((need.id, text))
    return targets


# --- the list and declaring ----------------------------------------------------------------------


@router.get("/staff/emergencies", response_class=HTMLResponse)
def emergencies(request: Request, user: StaffUser, session: SessionDep, page: PageDep) -> Response:
    return _list(request, session, user, page)


def _list(
    request: Request,
    session: Session,
    user: User,
    page: PageParams,
    context: dict | None = None,
    status_code: int = 200,
) -> Response:
    items, total = service.list_emergencies(session=session, limit=page.limit, offset=page.offset)
    return render(
        request,
        "staff/emergencies/list.html",
        {"emergencies": items, "total": total, "page": page, "labels": LABELS,
         "coordinates": user.has_role(Role.admin, Role.coordinator), **(context or {})},
        status_code,
    )  # fmt: skip


@router.post("/staff/emergencies", response_class=HTMLResponse)
def declare(request: Request, user: CoordinatorUser, session: SessionDep, form: FormDep) -> Response:
    values = form_values(form)
    data, errors = parse_form(EmergencyCreate, values, gettext_for(request))
    if data is not None:
        emergency = service.declare(session=session, actor=user, data=data)
        return redirect(f"/staff/emergencies/{emergency.id}?declared=1")
    page = PageParams(limit=50, offset=0)
    return _list(request, session, user, page, {"values": values, "errors": errors}, 422)


# --- the coverage board --------------------------------------------------------------------------


@router.get("/staff/emergencies/{emergency_id}", response_class=HTMLResponse)
def board(request: Request, emergency: CoordinatedEmergency, session: SessionDep) -> Response:
    return _board(request, session, emergency, {"declared": "declared" in request.query_params})


def _board(
    request: Request, session: Session, emergency: Emergency, context: dict | None = None, status_code: int = 200
) -> Response:
    """The board: needs by priority with coverage (two grouped queries), overdue pledges, offers to triage."""
    views = service.needs_with_coverage(session=session, needs=service.needs_of(session=session, emergency=emergency))
    current = [v for v in views if v.need.status in CURRENT_NEED]
    ended = [v for v in views if v.need.status not in CURRENT_NEED]
    overdue = service.overdue_pledges(session=session, emergency=emergency)
    offers, offers_total = service.list_offers(session=session, status=OfferStatus.offered, limit=TRIAGE_LIMIT)
    gettext, now = gettext_for(request), utcnow()
    return render(
        request,
        "staff/emergencies/board.html",
        {
            "emergency": emergency,
            "labels": LABELS,
            "names": {group: {key: gettext(text) for key, text in labels.items()} for group, labels in LABELS.items()},
            "current": current,
            "ended": ended,
            "short": sum(1 for v in current if v.need.status == NeedStatus.open and v.coverage.remaining > 0),
            "overdue": overdue[:OVERDUE_SHOWN],
            "overdue_total": len(overdue),
            "overdue_for": _overdue_for(request, now),
            "now": now,
            "offers": offers,
            "offers_total": offers_total,
            "offer_orgs": _organisations(session, {o.organisation_id for o in offers}),
            "targets": _offer_targets(request, current),
            "need_form": {"priority": "normal"},
            "need_errors": {},
            "failed": None,
            **(context or {}),
        },
        status_code,
    )


def _board_again(
    request: Request, session: Session, emergency: Emergency, error: DomainError | None, context: dict
) -> Response:
    """The board shown again after a refusal: the transaction (and its locks) is let go first."""
    session.rollback()
    return _board(request, session, emergency, context, error.status_code if error else 422)


@router.post("/staff/emergencies/{emergency_id}/stand-down", response_class=HTMLResponse)
def stand_down(request: Request, emergency: CoordinatedEmergency, user: CurrentUser, session: SessionDep) -> Response:
    try:
        service.stand_down(session=session, actor=user, emergency=emergency)
    except DomainError as error:
        return _board_again(request, session, emergency, error, {"header_errors": _errors_of(error, request)})
    return redirect(f"/staff/emergencies/{emergency.id}")


@router.post("/staff/emergencies/{emergency_id}/close", response_class=HTMLResponse)
def close_emergency(
    request: Request, emergency: CoordinatedEmergency, user: CurrentUser, session: SessionDep, form: FormDep
) -> Response:
    if form.get("confirm") != "on":
        errors = {"confirm": gettext_for(request)(CONFIRM_CLOSE)}
        return _board_again(request, session, emergency, None, {"close_errors": errors})
    try:
        service.close_emergency(session=session, actor=user, emergency=emergency)
    except DomainError as error:
        return _board_again(request, session, emergency, error, {"close_errors": _errors_of(error, request)})
    return redirect(f"/staff/emergencies/{emergency.id}")


@router.post("/staff/emergencies/{emergency_id}/needs", response_class=HTMLResponse)
def add_need(
    request: Request, emergency: CoordinatedEmergency, user: CurrentUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form, booleans=("open_now",))
    open_now = values.pop("open_now")
    data, errors = parse_typed_form(NeedCreate, values, request, times=("needed_by",), quantities=("quantity",))
    error = None
    if data is not None:
        try:
            need = service.add_need(session=session, actor=user, emergency=emergency, data=data, open_now=open_now)
        except DomainError as refused:
            error, errors = refused, _errors_of(refused, request)
        else:
            return redirect(f"/staff/emergencies/{emergency.id}#need-{need.id}")
    context = {"need_form": {**values, "open_now": open_now}, "need_errors": errors}
    return _board_again(request, session, emergency, error, context)


@router.post("/staff/emergencies/{emergency_id}/offers/{offer_id}/convert", response_class=HTMLResponse)
def convert_offer(
    request: Request,
    emergency: CoordinatedEmergency,
    offer: CoordinatedOffer,
    user: CurrentUser,
    session: SessionDep,
    form: FormDep,
) -> Response:
    values = form_values(form)
    data, errors = parse_typed_form(OfferConvert, values, request, times=("deliver_by",), quantities=("quantity",))
    error = None
    if data is not None:
        need = session.get(Need, data.need_id)
        if need is None or need.emergency_id != emergency.id:
            errors = {"need_id": gettext_for(request)(NOT_THIS_EMERGENCY)}
        else:
            try:
                service.convert_offer(session=session, actor=user, offer=offer, data=data)
            except DomainError as refused:
                error, errors = refused, _errors_of(refused, request)
            else:
                return redirect(f"/staff/emergencies/{emergency.id}#need-{need.id}")
    failed = {"id": offer.id, "form": "convert", "input": values, "errors": errors}
    return _board_again(request, session, emergency, error, {"failed": failed})


@router.post("/staff/emergencies/{emergency_id}/offers/{offer_id}/decline", response_class=HTMLResponse)
def decline_offer(
    request: Request,
    emergency: CoordinatedEmergency,
    offer: CoordinatedOffer,
    user: CurrentUser,
    session: SessionDep,
    form: FormDep,
) -> Response:
    values = form_values(form)
    data, errors = parse_form(ReasonBody, values, gettext_for(request))
    error = None
    if data is not None:
        try:
            service.decline_offer(session=session, actor=user, offer=offer, reason=data.reason)
        except DomainError as refused:
            error, errors = refused, _errors_of(refused, request)
        else:
            return redirect(f"/staff/emergencies/{emergency.id}#offers")
    failed = {"id": offer.id, "form": "decline", "input": values, "errors": errors}
    return _board_again(request, session, emergency, error, {"failed": failed})


@router.get("/staff/emergencies/{emergency_id}/export.csv")
def export_csv(
    emergency: CoordinatedEmergency, session: SessionDep, rows: Literal["needs", "pledges"] = "needs"
) -> Response:
    text = hxl.export(session=session, emergency=emergency, rows=rows)
    return csv_download(text, f"emergency-{emergency.id}-{rows}.csv")


# --- one need and its pledges --------------------------------------------------------------------


def _need_values(need: Need, language: str) -> dict[str, str]:
    """A need as its edit form shows it: the quantity in the reader's number format, the time local."""
    return {
        "item_name": need.item_name,
        "sector": need.sector.value,
        "unit": need.unit.value,
        "quantity": format_number(need.quantity, language),
        "priority": need.priority.value,
        "deliver_to": need.deliver_to,
        "needed_by": local_input_value(need.needed_by),
    }


def _receipts_by_pledge(session: Session, pledge_ids: list[int]) -> dict[int, list[Receipt]]:
    found: dict[int, list[Receipt]] = {}
    if pledge_ids:
        query = select(Receipt).where(col(Receipt.pledge_id).in_(pledge_ids)).order_by(Receipt.received_at, Receipt.id)
        for receipt in session.exec(query):
            found.setdefault(receipt.pledge_id, []).append(receipt)
    return found


@router.get("/staff/needs/{need_id}", response_class=HTMLResponse)
def need_page(request: Request, need: CoordinatedNeed, session: SessionDep) -> Response:
    return _need_page(request, session, need)


def _need_page(
    request: Request, session: Session, need: Need, context: dict | None = None, status_code: int = 200
) -> Response:
    pledges = service.pledges_of_need(session=session, need=need)
    ids = [p.id for p in pledges]
    delivered = delivered_by_pledge(session=session, pledge_ids=ids)
    now = utcnow()
    return render(
        request,
        "staff/emergencies/need.html",
        {
            "need": need,
            "emergency": session.get(Emergency, need.emergency_id),
            "coverage": coverage_for(session=session, needs=[need])[need.id],
            "pledges": pledges,
            "orgs": _organisations(session, {p.organisation_id for p in pledges}),
            "delivered": delivered,
            "receipts": _receipts_by_pledge(session, ids),
            "overdue": {
                p.id for p in pledges if p.status in UNDER_WAY and p.deliver_by < now and not delivered.get(p.id)
            },
            "labels": LABELS,
            "edit": _need_values(need, language_of(request)),
            "edit_errors": {},
            "failed": None,
            **(context or {}),
        },
        status_code,
    )


def _need_again(request: Request, session: Session, need: Need, error: DomainError | None, context: dict) -> Response:
    session.rollback()
    return _need_page(request, session, need, context, error.status_code if error else 422)


def _need_action(
    request: Request, session: Session, need: Need, form: str, values: dict, parsed: tuple, act: Callable
) -> Response:
    """Runs `act(data)` for a parsed form on a need; bad input or a refusal is shown beside that form."""
    data, errors = parsed
    error = None
    if data is not None:
        try:
            act(data)
        except DomainError as refused:
            error, errors = refused, _errors_of(refused, request)
        else:
            return redirect(f"/staff/needs/{need.id}")
    failed = {"id": need.id, "form": form, "input": values, "errors": errors}
    return _need_again(request, session, need, error, {"failed": failed})


@router.post("/staff/needs/{need_id}/open", response_class=HTMLResponse)
def open_need(request: Request, need: CoordinatedNeed, user: CurrentUser, session: SessionDep) -> Response:
    act = partial(service.open_need, session=session, actor=user, need=need)
    return _need_action(request, session, need, "need-open", {}, (True, {}), lambda _data: act())


@router.post("/staff/needs/{need_id}/close", response_class=HTMLResponse)
def close_need(
    request: Request, need: CoordinatedNeed, user: CurrentUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form)
    # The reason is optional here: checked only when one is given.
    if "reason" in values:
        parsed = parse_form(ReasonBody, values, gettext_for(request))
    else:
        parsed = (ReasonBody.model_construct(reason=None), {})
    act = partial(service.close_need, session=session, actor=user, need=need)
    return _need_action(request, session, need, "need-close", values, parsed, lambda data: act(reason=data.reason))


@router.post("/staff/needs/{need_id}/cancel", response_class=HTMLResponse)
def cancel_need(
    request: Request, need: CoordinatedNeed, user: CurrentUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form)
    parsed = parse_form(ReasonBody, values, gettext_for(request))
    act = partial(service.cancel_need, session=session, actor=user, need=need)
    return _need_action(request, session, need, "need-cancel", values, parsed, lambda data: act(reason=data.reason))


@router.post("/staff/needs/{need_id}/edit", response_class=HTMLResponse)
def edit_need(
    request: Request, need: CoordinatedNeed, user: CurrentUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form)
    # Every field counts as sent: a blank one is refused by the rules (or, for needed-by, cleared).
    complete = {field: values.get(field) for field in NeedUpdate.model_fields}
    data, errors = parse_typed_form(NeedUpdate, complete, request, times=("needed_by",), quantities=("quantity",))
    error = None
    if data is not None:
        try:
            service.update_need(session=session, actor=user, need=need, data=data)
        except DomainError as refused:
            error, errors = refused, _errors_of(refused, request)
        else:
            return redirect(f"/staff/needs/{need.id}")
    return _need_again(request, session, need, error, {"edit": values, "edit_errors": errors})


# --- a pledge's actions (on its need's page) -----------------------------------------------------


def _pledge_done(pledge: Pledge) -> Response:
    return redirect(f"/staff/needs/{pledge.need_id}#pledge-{pledge.id}")


def _pledge_again(
    request: Request,
    session: Session,
    pledge: Pledge,
    form: str,
    values: dict,
    errors: dict,
    error: DomainError | None = None,
) -> Response:
    session.rollback()
    need = session.get(Need, pledge.need_id)
    failed = {"id": pledge.id, "form": form, "input": values, "errors": errors}
    return _need_page(request, session, need, {"failed": failed}, error.status_code if error else 422)


def _pledge_action(
    request: Request, session: Session, pledge: Pledge, form: str, values: dict, parsed: tuple, act: Callable
) -> Response:
    """Runs `act(data)` for a parsed form on a pledge; bad input or a refusal shows the need page again
    with the message beside that pledge's form and the input kept."""
    data, errors = parsed
    if data is None:
        return _pledge_again(request, session, pledge, form, values, errors)
    try:
        act(data)
    except DomainError as error:
        return _pledge_again(request, session, pledge, form, values, _errors_of(error, request), error)
    return _pledge_done(pledge)


@router.post("/staff/pledges/{pledge_id}/accept", response_class=HTMLResponse)
def accept_pledge(
    request: Request, pledge: CoordinatedPledge, user: CurrentUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form)
    parsed = parse_typed_form(AcceptBody, values, request, quantities=("accepted_quantity",))
    act = partial(service.accept, session=session, actor=user, pledge=pledge)
    return _pledge_action(request, session, pledge, "accept", values, parsed, lambda data: act(data=data))


@router.post("/staff/pledges/{pledge_id}/decline", response_class=HTMLResponse)
def decline_pledge(
    request: Request, pledge: CoordinatedPledge, user: CurrentUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form)
    parsed = parse_form(ReasonBody, values, gettext_for(request))
    act = partial(service.decline, session=session, actor=user, pledge=pledge)
    return _pledge_action(request, session, pledge, "decline", values, parsed, lambda data: act(reason=data.reason))


@router.post("/staff/pledges/{pledge_id}/dispatch", response_class=HTMLResponse)
def dispatch_pledge(request: Request, pledge: CoordinatedPledge, user: CurrentUser, session: SessionDep) -> Response:
    act = partial(service.dispatch, session=session, actor=user, pledge=pledge)
    return _pledge_action(request, session, pledge, "dispatch", {}, (True, {}), lambda _data: act())


@router.post("/staff/pledges/{pledge_id}/receipts", response_class=HTMLResponse)
def record_receipt(
    request: Request, pledge: CoordinatedPledge, user: CurrentUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form)
    parsed = parse_typed_form(ReceiptCreate, values, request, times=("received_at",), quantities=("quantity",))
    act = partial(service.record_receipt, session=session, actor=user, pledge=pledge)
    return _pledge_action(request, session, pledge, "receipt", values, parsed, lambda data: act(data=data))


@router.post("/staff/pledges/{pledge_id}/cancel", response_class=HTMLResponse)
def cancel_pledge(
    request: Request, pledge: CoordinatedPledge, user: CurrentUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form)
    parsed = parse_form(ReasonBody, values, gettext_for(request))
    act = partial(service.cancel, session=session, actor=user, pledge=pledge)
    return _pledge_action(request, session, pledge, "cancel", values, parsed, lambda data: act(reason=data.reason))
