"""JSON routes of emergencies, needs, pledges, receipts and offers (`/api/v1/...`)."""

from decimal import Decimal
from typing import Annotated, Any, Literal

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import Engine
from sqlmodel import Session

from service.auth import CoordinatorUser, CurrentUser, bearer_token, logged_in_user
from service.config import settings
from service.db import Id, SessionDep, event_loop_pool, loop_local, write_turn
from service.emergencies import hxl, intake, service
from service.emergencies.coverage import NeedCoverage, coverage_for, delivered_by_pledge
from service.emergencies.deps import (
    CoordinatedEmergency,
    CoordinatedNeed,
    CoordinatedOffer,
    CoordinatedPledge,
    OwnPledge,
    VisibleEmergency,
    VisibleNeed,
    VisiblePledge,
    coordinates,
    partner_organisation,
)
from service.emergencies.models import (
    AcceptBody,
    Emergency,
    EmergencyCreate,
    EmergencyPublic,
    EmergencyStatus,
    EmergencyUpdate,
    Need,
    NeedCreate,
    NeedPublic,
    NeedStatus,
    NeedUpdate,
    OfferConvert,
    OfferCreate,
    OfferPublic,
    OfferStatus,
    Pledge,
    PledgeCreate,
    PledgePublic,
    PledgeStatus,
    ReasonBody,
    ReceiptCreate,
    ReceiptPublic,
)
from service.errors import API_ERRORS, Forbidden, Invalid
from service.i18n import N_
from service.limits import ListWindow
from service.pagination import Page, PageDep
from service.partners.models import Organisation
from service.users.models import User
from service.web import csv_download

router = APIRouter(prefix="/api/v1", tags=["emergencies"], responses=API_ERRORS)


def need_public(need: Need, coverage: NeedCoverage) -> NeedPublic:
    return NeedPublic.model_validate({**need.model_dump(), **coverage.as_dict()})


def needs_public(session: Session, needs: list[Need]) -> list[NeedPublic]:
    coverage = coverage_for(session=session, needs=needs)
    return [need_public(n, coverage[n.id]) for n in needs]


def pledges_public(session: Session, pledges: list[Pledge]) -> list[PledgePublic]:
    delivered = delivered_by_pledge(session=session, pledge_ids=[p.id for p in pledges])
    return [
        PledgePublic.model_validate(
            {**p.model_dump(), "delivered": delivered.get(p.id, Decimal(0)), "overdue": _overdue(p)}
        )
        for p in pledges
    ]


def _overdue(pledge: Pledge) -> bool:
    """Flagged by the job and still under way: a pledge cancelled or withdrawn while late is no longer overdue."""
    return pledge.overdue_since is not None and pledge.status in (PledgeStatus.accepted, PledgeStatus.in_transit)


def _acting_organisation(session: Session, user: User, organisation_id: int | None) -> Organisation:
    """Whose pledge or offer this is: a partner's own organisation; the one staff name."""
    if coordinates(user):
        if organisation_id is None:
            raise Invalid(N_("Name the organisation that pledges."), field="organisation_id")
        organisation = session.get(Organisation, organisation_id)
        if organisation is None:
            raise Invalid(N_("There is no organisation with this id."), field="organisation_id")
        return organisation
    organisation = partner_organisation(user, session)
    if organisation_id is not None and organisation_id != organisation.id:
        raise Forbidden(N_("You can pledge only for your own organisation."))
    return organisation


# --- emergencies -----------------------------------------------------------------------------------------


@router.get("/emergencies", response_model=Page[EmergencyPublic])
def list_emergencies(
    user: CurrentUser, session: SessionDep, page: PageDep, status: EmergencyStatus | None = None
) -> Page:
    """Emergencies, the newest first. Partner users see the active ones."""
    if not user.is_staff:
        partner_organisation(user, session)
        status = EmergencyStatus.active
    items, total = service.list_emergencies(session=session, status=status, limit=page.limit, offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post("/emergencies", status_code=status.HTTP_201_CREATED, response_model=EmergencyPublic)
def declare_emergency(data: EmergencyCreate, user: CoordinatorUser, session: SessionDep) -> Emergency:
    """Declare an emergency (active from now)."""
    return service.declare(session=session, actor=user, data=data)


@router.get("/emergencies/{emergency_id}", response_model=EmergencyPublic)
def get_emergency(emergency: VisibleEmergency) -> Emergency:
    """One emergency."""
    return emergency


@router.patch("/emergencies/{emergency_id}", response_model=EmergencyPublic)
def update_emergency(
    data: EmergencyUpdate, emergency: CoordinatedEmergency, user: CurrentUser, session: SessionDep
) -> Emergency:
    """Change an emergency's title, kind, area, severity or description."""
    return service.update_emergency(session=session, actor=user, emergency=emergency, data=data)


@router.post("/emergencies/{emergency_id}/stand-down", response_model=EmergencyPublic)
def stand_down(emergency: CoordinatedEmergency, user: CurrentUser, session: SessionDep) -> Emergency:
    """Stand the emergency down: no new pledges; accepted ones are still delivered."""
    return service.stand_down(session=session, actor=user, emergency=emergency)


@router.post("/emergencies/{emergency_id}/close", response_model=EmergencyPublic)
def close_emergency(emergency: CoordinatedEmergency, user: CurrentUser, session: SessionDep) -> Emergency:
    """Close the emergency; its open needs close with that reason."""
    return service.close_emergency(session=session, actor=user, emergency=emergency)


@router.get("/emergencies/{emergency_id}/needs", response_model=list[NeedPublic])
def list_needs(
    emergency: VisibleEmergency,
    user: CurrentUser,
    session: SessionDep,
    window: ListWindow,
    status: NeedStatus | None = None,
) -> list[NeedPublic]:
    """The emergency's needs by priority, with coverage (`limit` of them, 500 at most). Partner users see the
    open ones."""
    if not user.is_staff:
        status = NeedStatus.open
    needs = service.needs_of(session=session, emergency=emergency, statuses=(status,) if status else None)
    views = service.needs_with_coverage(session=session, needs=needs)[window.offset : window.offset + window.limit]
    return [need_public(v.need, v.coverage) for v in views]


@router.post("/emergencies/{emergency_id}/needs", status_code=status.HTTP_201_CREATED, response_model=NeedPublic)
def add_need(
    data: NeedCreate,
    emergency: CoordinatedEmergency,
    user: CurrentUser,
    session: SessionDep,
    open_now: Annotated[bool, Query(alias="open", description="Open it to partners at once.")] = False,
) -> NeedPublic:
    """Add a need (a draft unless `?open=true`)."""
    need = service.add_need(session=session, actor=user, emergency=emergency, data=data, open_now=open_now)
    return needs_public(session, [need])[0]


class CoveragePublic(BaseModel):
    emergency: EmergencyPublic
    needs: list[NeedPublic]
    overdue: list[PledgePublic]
    offers: list[OfferPublic]


@router.get("/emergencies/{emergency_id}/coverage", response_model=CoveragePublic)
def coverage(emergency: CoordinatedEmergency, session: SessionDep) -> CoveragePublic:
    """The coverage board as data: needs by priority with coverage, overdue pledges, offers to triage."""
    views = service.needs_with_coverage(session=session, needs=service.needs_of(session=session, emergency=emergency))
    overdue = [p for p, _, _ in service.overdue_pledges(session=session, emergency=emergency)]
    offers, _ = service.list_offers(session=session, status=OfferStatus.offered, limit=500)
    return CoveragePublic(
        emergency=EmergencyPublic.model_validate(emergency.model_dump()),
        needs=[need_public(v.need, v.coverage) for v in views],
        overdue=pledges_public(session, overdue),
        offers=[OfferPublic.model_validate(o.model_dump()) for o in offers],
    )


@router.get(
    "/emergencies/{emergency_id}/export.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}}
)
def export_csv(
    emergency: CoordinatedEmergency, session: SessionDep, rows: Literal["needs", "pledges"] = "needs"
) -> Response:
    """Needs (or `?rows=pledges`) as HXL-tagged CSV: the hashtag row follows the header row."""
    text = hxl.export(session=session, emergency=emergency, rows=rows)
    return csv_download(text, f"emergency-{emergency.id}-{rows}.csv")


# --- needs -----------------------------------------------------------------------------------------------


@router.get("/needs/{need_id}", response_model=NeedPublic)
def get_need(need: VisibleNeed, session: SessionDep) -> NeedPublic:
    """One need with its coverage."""
    return needs_public(session, [need])[0]


@router.patch("/needs/{need_id}", response_model=NeedPublic)
def update_need(data: NeedUpdate, need: CoordinatedNeed, user: CurrentUser, session: SessionDep) -> NeedPublic:
    """Change a draft or open need (its quantity never below what is pledged)."""
    return needs_public(session, [service.update_need(session=session, actor=user, need=need, data=data)])[0]


@router.post("/needs/{need_id}/open", response_model=NeedPublic)
def open_need(need: CoordinatedNeed, user: CurrentUser, session: SessionDep) -> NeedPublic:
    """Open a draft need to partners."""
    return needs_public(session, [service.open_need(session=session, actor=user, need=need)])[0]


class OptionalReason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)] | None = None


@router.post("/needs/{need_id}/close", response_model=NeedPublic)
def close_need(
    need: CoordinatedNeed, user: CurrentUser, session: SessionDep, data: OptionalReason | None = None
) -> NeedPublic:
    """Close an open need; offers still waiting against it are declined."""
    reason = data.reason if data else None
    return needs_public(session, [service.close_need(session=session, actor=user, need=need, reason=reason)])[0]


@router.post("/needs/{need_id}/cancel", response_model=NeedPublic)
def cancel_need(data: ReasonBody, need: CoordinatedNeed, user: CurrentUser, session: SessionDep) -> NeedPublic:
    """Cancel a need, with the reason; its live pledges end and partners are told."""
    return needs_public(session, [service.cancel_need(session=session, actor=user, need=need, reason=data.reason)])[0]


@router.get("/needs/{need_id}/pledges", response_model=list[PledgePublic])
def list_need_pledges(
    need: VisibleNeed, user: CurrentUser, session: SessionDep, window: ListWindow
) -> list[PledgePublic]:
    """The need's pledges, the newest first (`limit` of them, 500 at most): all of them for coordinators, a
    partner's own for a partner user."""
    organisation_id = None if coordinates(user) else partner_organisation(user, session).id
    pledges = service.pledges_of_need(
        session=session, need=need, organisation_id=organisation_id, limit=window.limit, offset=window.offset
    )
    return pledges_public(session, pledges)


@router.post("/needs/{need_id}/pledges", status_code=status.HTTP_201_CREATED, response_model=PledgePublic)
async def pledge(need_id: Id, data: PledgeCreate, request: Request) -> Response:
    """Pledge against an open need: 409, saying how much is still open, if it would over-commit the need."""
    # The route a surge hits hardest. A partner's own pledge on PostgreSQL is made in the event loop; any
    # other in one trip to the thread pool, with no session unless the service is needed. The answer is
    # serialised once.
    pool = event_loop_pool(request.app)
    if pool is not None:
        created = await intake.partner_pledge_in_loop(pool, bearer_token(request), need_id, data)
        if created is not None:
            return _created(created)
    async with write_turn(request) as engine:
        return await to_thread.run_sync(_pledge, request, engine, need_id, data, limiter=_pledge_slots(request.app))


def _pledge_slots(app: Any) -> CapacityLimiter:
    """The pledges this process works on at once (ACCORD_PLEDGE_CONCURRENCY; one limiter per event loop).

    A surge beyond them waits in the event loop, in order, where waiting costs nothing. Let into the thread
    pool all at once, 16 pledges a process contended for the interpreter's lock at every round trip to the
    database: each cost more CPU, and the unlucky waited long (PostgreSQL, 32 clients: 160–230 pledges a
    second, p99 290–390 ms; four at once: 233–247 a second, p99 240–250 ms)."""
    return loop_local(app, "pledge_slots", lambda: CapacityLimiter(settings.pledge_concurrency))


def _pledge(request: Request, engine: Engine, need_id: int, data: PledgeCreate) -> Response:
    # A partner's own pledge on SQLite takes the quick way; anyone else's goes to the service.
    created = intake.partner_pledge(engine, bearer_token(request), need_id, data)
    if created is None:
        with Session(engine, expire_on_commit=False) as session:
            user = logged_in_user(request, session)
            organisation = _acting_organisation(session, user, data.organisation_id)
            # Whether a partner may see the need is checked with the need's lock, in the same query.
            created = service.create_pledge(
                session=session,
                actor=user,
                need_id=need_id,
                organisation=organisation,
                data=data,
                only_open=not user.is_staff,
            )
    return _created(created)


def _created(pledge: Pledge) -> Response:
    # Nothing has arrived of a pledge made just now: no query (and, on SQLite, no second write transaction).
    answer = PledgePublic.model_validate(pledge, update={"delivered": Decimal(0), "overdue": False})
    return Response(answer.model_dump_json(), status.HTTP_201_CREATED, media_type="application/json")


# --- pledges ---------------------------------------------------------------------------------------------


@router.get("/pledges", response_model=Page[PledgePublic])
def list_pledges(user: CurrentUser, session: SessionDep, page: PageDep, status: PledgeStatus | None = None) -> Page:
    """Pledges, the newest first: all for coordinators, a partner's own for a partner user."""
    organisation_id = None if coordinates(user) else partner_organisation(user, session).id
    items, total = service.list_pledges(
        session=session, organisation_id=organisation_id, status=status, limit=page.limit, offset=page.offset
    )
    return Page(items=pledges_public(session, items), total=total, limit=page.limit, offset=page.offset)


@router.get("/pledges/{pledge_id}", response_model=PledgePublic)
def get_pledge(pledge: VisiblePledge, session: SessionDep) -> PledgePublic:
    """One pledge, with what has arrived."""
    return pledges_public(session, [pledge])[0]


@router.post("/pledges/{pledge_id}/accept", response_model=PledgePublic)
def accept_pledge(
    pledge: CoordinatedPledge, user: CurrentUser, session: SessionDep, data: AcceptBody | None = None
) -> PledgePublic:
    """Accept an offered pledge, all of it or `accepted_quantity` of it."""
    accepted = service.accept(session=session, actor=user, pledge=pledge, data=data or AcceptBody())
    return pledges_public(session, [accepted])[0]


@router.post("/pledges/{pledge_id}/decline", response_model=PledgePublic)
def decline_pledge(data: ReasonBody, pledge: CoordinatedPledge, user: CurrentUser, session: SessionDep) -> PledgePublic:
    """Decline an offered pledge, with the reason."""
    return pledges_public(session, [service.decline(session=session, actor=user, pledge=pledge, reason=data.reason)])[0]


@router.post("/pledges/{pledge_id}/withdraw", response_model=PledgePublic)
def withdraw_pledge(pledge: OwnPledge, user: CurrentUser, session: SessionDep) -> PledgePublic:
    """The partner withdraws their pledge, before anything of it has arrived."""
    return pledges_public(session, [service.withdraw(session=session, actor=user, pledge=pledge)])[0]


@router.post("/pledges/{pledge_id}/dispatch", response_model=PledgePublic)
def dispatch_pledge(pledge: VisiblePledge, user: CurrentUser, session: SessionDep) -> PledgePublic:
    """Mark an accepted pledge as on its way (staff, or the partner sending it)."""
    return pledges_public(session, [service.dispatch(session=session, actor=user, pledge=pledge)])[0]


@router.post("/pledges/{pledge_id}/cancel", response_model=PledgePublic)
def cancel_pledge(data: ReasonBody, pledge: CoordinatedPledge, user: CurrentUser, session: SessionDep) -> PledgePublic:
    """Cancel a pledge not yet delivered, with the reason."""
    return pledges_public(session, [service.cancel(session=session, actor=user, pledge=pledge, reason=data.reason)])[0]


@router.get("/pledges/{pledge_id}/receipts", response_model=list[ReceiptPublic])
def list_receipts(pledge: VisiblePledge, session: SessionDep, window: ListWindow) -> list:
    """What has arrived of the pledge (`limit` receipts, 500 at most)."""
    return service.receipts_of(session=session, pledge=pledge, limit=window.limit, offset=window.offset)


@router.post("/pledges/{pledge_id}/receipts", status_code=status.HTTP_201_CREATED, response_model=ReceiptPublic)
def record_receipt(data: ReceiptCreate, pledge: CoordinatedPledge, user: CurrentUser, session: SessionDep) -> object:
    """Record what arrived (part or all of the accepted quantity)."""
    return service.record_receipt(session=session, actor=user, pledge=pledge, data=data)


# --- offers ----------------------------------------------------------------------------------------------


@router.get("/offers", response_model=Page[OfferPublic])
def list_offers(user: CurrentUser, session: SessionDep, page: PageDep, status: OfferStatus | None = None) -> Page:
    """Unsolicited offers: the triage list for coordinators, a partner's own for a partner user."""
    organisation_id = None if coordinates(user) else partner_organisation(user, session).id
    items, total = service.list_offers(
        session=session, organisation_id=organisation_id, status=status, limit=page.limit, offset=page.offset
    )
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post("/offers", status_code=status.HTTP_201_CREATED, response_model=OfferPublic)
def make_offer(data: OfferCreate, user: CurrentUser, session: SessionDep) -> object:
    """Offer something no need asked for; it waits in the coordinators' triage list."""
    organisation = _acting_organisation(session, user, data.organisation_id)
    return service.create_offer(session=session, actor=user, organisation=organisation, data=data)


@router.post("/offers/{offer_id}/convert", response_model=PledgePublic)
def convert_offer(data: OfferConvert, offer: CoordinatedOffer, user: CurrentUser, session: SessionDep) -> PledgePublic:
    """Turn the offer into an accepted pledge against a need (if it fits what the need still lacks)."""
    return pledges_public(session, [service.convert_offer(session=session, actor=user, offer=offer, data=data)])[0]


@router.post("/offers/{offer_id}/decline", response_model=OfferPublic)
def decline_offer(data: ReasonBody, offer: CoordinatedOffer, user: CurrentUser, session: SessionDep) -> object:
    """Decline the offer, with the reason."""
    return service.decline_offer(session=session, actor=user, offer=offer, reason=data.reason)
