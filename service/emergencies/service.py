"""The rules of emergencies, needs, pledges, receipts and offers, and the invariant that holds them:
for every need, the live pledged quantity never exceeds the quantity needed.

Every function that can add to a need's pledged quantity first locks the need's row (`FOR UPDATE` on
PostgreSQL; on SQLite the writing transaction already holds the database's write lock from `BEGIN
IMMEDIATE`), then sums the live pledges and refuses what does not fit, all in one transaction.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from service import audit
from service.bulletins import changes as public
from service.db import utcnow
from service.emergencies.coverage import (
    PLEDGED_OF_NEED,
    NeedCoverage,
    coverage_for,
    delivered_by_pledge,
    pledged_total,
)
from service.emergencies.models import (
    PRIORITY_ORDER,
    UNIT_LABELS,
    WHOLE_UNITS,
    AcceptBody,
    Emergency,
    EmergencyCreate,
    EmergencyStatus,
    EmergencyUpdate,
    Need,
    NeedCreate,
    NeedStatus,
    NeedUpdate,
    Offer,
    OfferConvert,
    OfferCreate,
    OfferStatus,
    Pledge,
    PledgeCreate,
    PledgeStatus,
    QuantityType,
    Receipt,
    ReceiptCreate,
    Unit,
)
from service.errors import Conflict, Invalid, Label, NotFound
from service.i18n import N_, format_datetime, format_number, gettext_in
from service.notifications import service as notifications
from service.partners.models import Organisation, VerificationStatus
from service.users.models import Role, User

NO_SUCH_NEED = N_("There is no need with this id.")

Locked = TypeVar("Locked", Need, Pledge, Offer)
# A clock a few minutes fast on a partner's system is not an error; a deadline an hour ago is.
CLOCK_SKEW = timedelta(minutes=5)


class PledgeExceedsNeed(Conflict):
    def __init__(self, need: Need, remaining: Decimal, asked: Decimal) -> None:
        super().__init__(
            N_("Need {need} has {remaining} {unit} left; the pledge offers {asked}."),
            need=need.id,
            remaining=_plain(remaining),
            unit=Label(UNIT_LABELS[need.unit]),
            asked=_plain(asked),
        )
        self.extra = {"remaining": float(remaining)}


class WrongState(Conflict):
    """An action the status machine does not allow from the current state."""


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral() else f"{value:.2f}"


def _check_whole(unit: Unit, quantity: Decimal, field: str = "quantity") -> None:
    if unit in WHOLE_UNITS and quantity != quantity.to_integral():
        raise Invalid(N_("This unit is counted in whole numbers."), field=field)


def _check_future(value: datetime | None, field: str) -> None:
    if value is not None and value < utcnow() - CLOCK_SKEW:
        raise Invalid(N_("This time has already passed."), field=field)


def _require(condition: bool, message: str, **params: object) -> None:
    if not condition:
        raise WrongState(message, **params)


# --- emergencies -----------------------------------------------------------------------------------------


def declare(*, session: Session, actor: User, data: EmergencyCreate) -> Emergency:
    """Declares an emergency, active from now."""
    emergency = Emergency(**data.model_dump(), declared_by_id=actor.id)
    session.add(emergency)
    audit.record(session, actor=actor, action="emergency.declare", entity=emergency)
    public.mark_shared(session)  # the public home lists the active emergencies
    session.commit()
    return emergency


def update_emergency(*, session: Session, actor: User, emergency: Emergency, data: EmergencyUpdate) -> Emergency:
    """Changes the given fields of an emergency that is not closed."""
    _require(emergency.status != EmergencyStatus.closed, N_("The emergency is closed."))
    before = audit.snapshot(emergency)
    for field, value in data.model_dump(exclude_unset=True).items():
        if value is None and field != "description":
            raise Invalid(N_("This field cannot be empty."), field=field)
        setattr(emergency, field, value if value is not None else "")
    session.add(emergency)
    audit.record(session, actor=actor, action="emergency.update", entity=emergency, before=before)
    public.mark_shared(session)  # the public home lists the active emergencies
    session.commit()
    return emergency


def stand_down(*, session: Session, actor: User, emergency: Emergency) -> Emergency:
    """Stands an active emergency down: no new pledges; accepted ones are still delivered."""
    _require(emergency.status == EmergencyStatus.active, N_("Only an active emergency can be stood down."))
    before = audit.snapshot(emergency)
    emergency.status = EmergencyStatus.stood_down
    emergency.stood_down_at = utcnow()
    emergency.stood_down_by_id = actor.id
    session.add(emergency)
    audit.record(session, actor=actor, action="emergency.stand_down", entity=emergency, before=before)
    public.mark_shared(session)  # the public home lists the active emergencies
    session.commit()
    return emergency


def close_emergency(*, session: Session, actor: User, emergency: Emergency) -> Emergency:
    """Closes an emergency; its open needs close and its drafts are cancelled, with that reason."""
    _require(emergency.status != EmergencyStatus.closed, N_("The emergency is already closed."))
    before = audit.snapshot(emergency)
    reason = N_("The emergency was closed.")
    needs = session.exec(
        select(Need).where(Need.emergency_id == emergency.id, col(Need.status).in_([NeedStatus.draft, NeedStatus.open]))
    ).all()
    for need in needs:
        _end_need(
            session, actor, need, NeedStatus.closed if need.status == NeedStatus.open else NeedStatus.cancelled, reason
        )
    emergency.status = EmergencyStatus.closed
    emergency.closed_at = utcnow()
    emergency.closed_by_id = actor.id
    session.add(emergency)
    audit.record(session, actor=actor, action="emergency.close", entity=emergency, before=before)
    public.mark_shared(session)  # the public home lists the active emergencies
    session.commit()
    return emergency


def list_emergencies(
    *, session: Session, status: EmergencyStatus | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[Emergency], int]:
    """Emergencies, the newest first, and how many match."""
    query = select(Emergency)
    count = select(sa.func.count()).select_from(Emergency)
    if status is not None:
        query, count = query.where(Emergency.status == status), count.where(Emergency.status == status)
    rows = session.exec(
        query.order_by(col(Emergency.declared_at).desc(), col(Emergency.id).desc()).offset(offset).limit(limit)
    )
    return list(rows), session.exec(count).one()


# --- needs -----------------------------------------------------------------------------------------------


def add_need(*, session: Session, actor: User, emergency: Emergency, data: NeedCreate, open_now: bool = False) -> Need:
    """Adds a need to an emergency, as a draft or (when asked) open to partners at once."""
    _require(emergency.status != EmergencyStatus.closed, N_("The emergency is closed."))
    if open_now:
        _require(emergency.status == EmergencyStatus.active, N_("Needs open only in an active emergency."))
    _check_whole(data.unit, data.quantity)
    need = Need(**data.model_dump(), emergency_id=emergency.id, created_by_id=actor.id)
    if open_now:
        need.status = NeedStatus.open
    session.add(need)
    audit.record(session, actor=actor, action="need.create", entity=need)
    session.commit()
    return need


def _lock_row(session: Session, model: type[Locked], row_id: int) -> Locked:
    """The row re-read under a row lock, so the checks that follow see it as it is now, not as loaded."""
    return session.exec(
        select(model).where(model.id == row_id).with_for_update().execution_options(populate_existing=True)
    ).one()


def _lock_need(session: Session, need_id: int) -> Need:
    """The need, re-read under a row lock that serialises everything that counts against it."""
    return _lock_row(session, Need, need_id)


def _lock_need_to_pledge(session: Session, need_id: int) -> tuple[Need, EmergencyStatus, Decimal] | None:
    """The need under its row lock, its emergency's status and its live pledged total, in one query."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    statement = _NEED_TO_PLEDGE_WITH_TOTAL if sqlite else _NEED_TO_PLEDGE_TOTAL_AFTER_LOCK
    return session.exec(statement, params={"need_id": need_id}).first()


# Built once: every pledge asks one of them.
_NEED_TO_PLEDGE = (
    select(Need, Emergency.status.label("emergency_status"))
    .join(Emergency, Emergency.id == Need.emergency_id)
    .where(Need.id == sa.bindparam("need_id"))
    .with_for_update(of=Need)
)
# SQLite: the writer holds the database from its first statement, so a subquery counts what is there.
_NEED_TO_PLEDGE_WITH_TOTAL = _NEED_TO_PLEDGE.add_columns(PLEDGED_OF_NEED).execution_options(populate_existing=True)
# PostgreSQL: a subquery of the locking statement would count the pledges as they were when the statement
# began, before the transaction whose lock it waited for committed. The need is therefore locked in a
# subquery and the total counted above it, once the lock is granted, by accord_pledged() (migration 0006),
# whose own query sees what has been committed by then.
LOCKED_FOR_PLEDGE = _NEED_TO_PLEDGE.subquery("locked")
LIVE_TOTAL = sa.type_coerce(sa.func.accord_pledged(LOCKED_FOR_PLEDGE.c.id), QuantityType)
_NEED_TO_PLEDGE_TOTAL_AFTER_LOCK = select(
    aliased(Need, LOCKED_FOR_PLEDGE), LOCKED_FOR_PLEDGE.c.emergency_status, LIVE_TOTAL
).execution_options(populate_existing=True)


def _lock_pledge(session: Session, pledge_id: int) -> Pledge:
    """The pledge, re-read under a row lock: two decisions on one pledge (say an accept racing a withdrawal
    or another accept) take turns, and the second sees the first's outcome, not the state loaded before.
    Taken after its need's lock where both are needed, never before."""
    return _lock_row(session, Pledge, pledge_id)


def update_need(*, session: Session, actor: User, need: Need, data: NeedUpdate) -> Need:
    """Changes a need; its quantity cannot go below what is already pledged."""
    need = _lock_need(session, need.id)
    _require(need.status in (NeedStatus.draft, NeedStatus.open), N_("Only a draft or open need can be changed."))
    changes = data.model_dump(exclude_unset=True)
    for field in ("item_name", "sector", "unit", "quantity", "priority", "deliver_to"):
        if field in changes and changes[field] is None:
            raise Invalid(N_("This field cannot be empty."), field=field)
    pledged = pledged_total(session=session, need_id=need.id)
    if "unit" in changes and changes["unit"] != need.unit and pledged > 0:
        raise Conflict(N_("The unit cannot change once there are pledges."), field="unit")
    unit = changes.get("unit", need.unit)
    quantity = changes.get("quantity", need.quantity)
    _check_whole(unit, quantity)
    if quantity < pledged:
        raise Conflict(
            N_("{pledged} {unit} are already pledged; the need cannot be less than that."),
            field="quantity",
            pledged=_plain(pledged),
            unit=Label(UNIT_LABELS[unit]),
        )
    before = audit.snapshot(need)
    for field, value in changes.items():
        setattr(need, field, value)
    session.add(need)
    audit.record(session, actor=actor, action="need.update", entity=need, before=before)
    session.commit()
    return need


def open_need(*, session: Session, actor: User, need: Need) -> Need:
    """Opens a draft need to partners."""
    _require(need.status == NeedStatus.draft, N_("Only a draft need can be opened."))
    emergency = session.get(Emergency, need.emergency_id)
    _require(emergency.status == EmergencyStatus.active, N_("Needs open only in an active emergency."))
    before = audit.snapshot(need)
    need.status = NeedStatus.open
    session.add(need)
    audit.record(session, actor=actor, action="need.open", entity=need, before=before)
    session.commit()
    return need


def _end_need(session: Session, actor: User, need: Need, status: NeedStatus, reason: str | None) -> None:
    """Closes or cancels a need; offers still waiting are declined, and a cancel also cancels accepted ones."""
    before = audit.snapshot(need)
    need.status = status
    need.status_reason = reason
    session.add(need)
    audit.record(session, actor=actor, action=f"need.{status.value}", entity=need, before=before)
    ending = [PledgeStatus.offered] + (
        [PledgeStatus.accepted, PledgeStatus.in_transit] if status == NeedStatus.cancelled else []
    )
    for pledge in session.exec(select(Pledge).where(Pledge.need_id == need.id, col(Pledge.status).in_(ending))):
        new = PledgeStatus.declined if pledge.status == PledgeStatus.offered else PledgeStatus.cancelled
        _set_pledge_status(session, actor, pledge, new, reason or N_("The need was closed."))


def close_need(*, session: Session, actor: User, need: Need, reason: str | None = None) -> Need:
    """Closes an open need (covered, or no longer pledged against); waiting offers are declined."""
    _require(need.status == NeedStatus.open, N_("Only an open need can be closed."))
    _end_need(session, actor, need, NeedStatus.closed, reason)
    session.commit()
    return need


def cancel_need(*, session: Session, actor: User, need: Need, reason: str) -> Need:
    """Cancels a draft or open need: it is no longer needed, and its live pledges end."""
    _require(need.status in (NeedStatus.draft, NeedStatus.open), N_("Only a draft or open need can be cancelled."))
    _end_need(session, actor, need, NeedStatus.cancelled, reason)
    session.commit()
    return need


@dataclass(frozen=True)
class NeedView:
    need: Need
    coverage: NeedCoverage


def needs_with_coverage(*, session: Session, needs: list[Need]) -> list[NeedView]:
    """Needs with their coverage, by priority, then deadline."""
    coverage = coverage_for(session=session, needs=needs)
    ordered = sorted(
        needs,
        key=lambda n: (PRIORITY_ORDER[n.priority], n.needed_by is None, n.needed_by or utcnow(), n.id),
    )
    return [NeedView(n, coverage[n.id]) for n in ordered]


def needs_of(*, session: Session, emergency: Emergency, statuses: tuple[NeedStatus, ...] | None = None) -> list[Need]:
    """The needs of an emergency, optionally of some statuses."""
    query = select(Need).where(Need.emergency_id == emergency.id)
    if statuses:
        query = query.where(col(Need.status).in_(statuses))
    return list(session.exec(query))


def open_needs_for_partner(*, session: Session, organisation: Organisation) -> list[NeedView]:
    """Open needs of active emergencies, the organisation's own sectors first, then by priority."""
    needs = list(
        session.exec(
            select(Need)
            .join(Emergency, col(Emergency.id) == Need.emergency_id)
            .where(Need.status == NeedStatus.open, Emergency.status == EmergencyStatus.active)
        )
    )
    views = needs_with_coverage(session=session, needs=needs)
    own = set(organisation.sectors)
    return sorted(views, key=lambda v: v.need.sector not in own)  # stable: priority order kept within


# --- pledges ---------------------------------------------------------------------------------------------


def _set_pledge_status(
    session: Session, actor: User | str, pledge: Pledge, status: PledgeStatus, reason: str | None = None
) -> None:
    before = audit.snapshot(pledge)
    pledge.status = status
    if reason is not None:
        pledge.status_reason = reason
    if status in (PledgeStatus.declined, PledgeStatus.cancelled):
        _notify_partner(session, pledge, status)
    session.add(pledge)
    audit.record(session, actor=actor, action=f"pledge.{status.value}", entity=pledge, before=before)


def _fits(session: Session, need: Need, adding: Decimal, replacing: Decimal = Decimal(0)) -> None:
    """Refuses `adding` (in place of `replacing`, already counted) if the need would be over-committed."""
    remaining = need.quantity - (pledged_total(session=session, need_id=need.id) - replacing)
    if adding > remaining:
        raise PledgeExceedsNeed(need, remaining, adding)


def check_pledge_times(data: PledgeCreate) -> None:
    """A new pledge's times, checked before anything is read."""
    _check_future(data.deliver_by, "deliver_by")
    if data.available_from is not None and data.available_from > data.deliver_by:
        raise Invalid(N_("Available from must be before deliver by."), field="available_from")


def check_new_pledge(
    need: Need,
    emergency_status: EmergencyStatus,
    verification_status: VerificationStatus,
    quantity: Decimal,
    pledged: Decimal,
) -> None:
    """What a new pledge of `quantity` must pass once its need is locked and the need's live total
    (`pledged`) read: the need open, its emergency active, the organisation not suspended, a whole unit
    counted whole, and room left for it."""
    _require(need.status == NeedStatus.open, N_("This need is not open for pledges."))
    _require(emergency_status == EmergencyStatus.active, N_("The emergency no longer takes pledges."))
    if verification_status == VerificationStatus.suspended:
        raise Conflict(N_("A suspended organisation cannot pledge."))
    _check_whole(need.unit, quantity)
    remaining = need.quantity - pledged
    if quantity > remaining:
        raise PledgeExceedsNeed(need, remaining, quantity)


def create_pledge(
    *,
    session: Session,
    actor: User,
    need_id: int,
    organisation: Organisation,
    data: PledgeCreate,
    only_open: bool = False,
) -> Pledge:
    """Records an organisation's pledge against an open need, if it fits what is still open.

    `only_open`: a need that is not open to pledges, or whose emergency is over, is not there at all (404),
    as a partner user sees it; otherwise it is a 409 saying why."""
    check_pledge_times(data)
    locked = _lock_need_to_pledge(session, need_id)
    if locked is None or (only_open and (locked[0].status, locked[1]) != (NeedStatus.open, EmergencyStatus.active)):
        raise NotFound(NO_SUCH_NEED)
    need, emergency_status, pledged = locked
    check_new_pledge(need, emergency_status, organisation.verification_status, data.quantity, pledged)
    pledge = Pledge(
        **data.model_dump(exclude={"organisation_id"}),
        need_id=need.id,
        organisation_id=organisation.id,
        created_by_id=actor.id,
    )
    session.add(pledge)
    audit.record(session, actor=actor, action="pledge.create", entity=pledge)
    session.commit()
    return pledge


def accept(*, session: Session, actor: User, pledge: Pledge, data: AcceptBody) -> Pledge:
    """Accepts an offered pledge, all of it or less; the partner is told."""
    need = _lock_need(session, pledge.need_id)
    pledge = _lock_pledge(session, pledge.id)
    _require(pledge.status == PledgeStatus.offered, N_("Only an offered pledge can be accepted."))
    _require(need.status == NeedStatus.open, N_("This need is not open for pledges."))
    quantity = data.accepted_quantity if data.accepted_quantity is not None else pledge.quantity
    if quantity > pledge.quantity:
        raise Invalid(N_("You cannot accept more than was offered."), field="accepted_quantity")
    _check_whole(need.unit, quantity, "accepted_quantity")
    _fits(session, need, quantity, replacing=pledge.counted)
    before = audit.snapshot(pledge)
    pledge.status = PledgeStatus.accepted
    pledge.accepted_quantity = quantity
    pledge.decided_at = utcnow()
    pledge.decided_by_id = actor.id
    session.add(pledge)
    audit.record(session, actor=actor, action="pledge.accept", entity=pledge, before=before)
    _notify_partner(session, pledge, PledgeStatus.accepted)
    session.commit()
    return pledge


def decline(*, session: Session, actor: User, pledge: Pledge, reason: str) -> Pledge:
    """Declines an offered pledge, with the reason; the partner is told."""
    pledge = _lock_pledge(session, pledge.id)
    _require(pledge.status == PledgeStatus.offered, N_("Only an offered pledge can be declined."))
    pledge.decided_at = utcnow()
    pledge.decided_by_id = actor.id
    _set_pledge_status(session, actor, pledge, PledgeStatus.declined, reason)
    session.commit()
    return pledge


def withdraw(*, session: Session, actor: User, pledge: Pledge) -> Pledge:
    """The partner withdraws a pledge before anything of it was delivered."""
    pledge = _lock_pledge(session, pledge.id)
    _require(
        pledge.status in (PledgeStatus.offered, PledgeStatus.accepted, PledgeStatus.in_transit),
        N_("Only a pledge not yet delivered can be withdrawn."),
    )
    _require(
        not delivered_by_pledge(session=session, pledge_ids=[pledge.id]),
        N_("Part of this pledge has arrived: ask the staff to cancel the rest."),
    )
    _set_pledge_status(session, actor, pledge, PledgeStatus.withdrawn)
    session.commit()
    return pledge


def dispatch(*, session: Session, actor: User, pledge: Pledge) -> Pledge:
    """Marks an accepted pledge as on its way."""
    pledge = _lock_pledge(session, pledge.id)
    _require(pledge.status == PledgeStatus.accepted, N_("Only an accepted pledge can be dispatched."))
    before = audit.snapshot(pledge)
    pledge.status = PledgeStatus.in_transit
    pledge.dispatched_at = utcnow()
    session.add(pledge)
    audit.record(session, actor=actor, action="pledge.dispatch", entity=pledge, before=before)
    session.commit()
    return pledge


def cancel(*, session: Session, actor: User, pledge: Pledge, reason: str) -> Pledge:
    """Staff cancel a pledge that is not delivered, with the reason; the partner is told."""
    pledge = _lock_pledge(session, pledge.id)
    _require(
        pledge.status in (PledgeStatus.offered, PledgeStatus.accepted, PledgeStatus.in_transit),
        N_("Only a pledge not yet delivered can be cancelled."),
    )
    _set_pledge_status(session, actor, pledge, PledgeStatus.cancelled, reason)
    session.commit()
    return pledge


def record_receipt(*, session: Session, actor: User, pledge: Pledge, data: ReceiptCreate) -> Receipt:
    """Records what arrived of an accepted pledge; when all of it has, the pledge is delivered."""
    received_at = data.received_at or utcnow()
    if received_at > utcnow() + CLOCK_SKEW:
        raise Invalid(N_("This time is in the future."), field="received_at")
    need = _lock_need(session, pledge.need_id)  # receipts of one need are serialised too
    pledge = _lock_pledge(session, pledge.id)
    _require(
        pledge.status in (PledgeStatus.accepted, PledgeStatus.in_transit),
        N_("Receipts are recorded for accepted pledges and those in transit."),
    )
    _check_whole(need.unit, data.quantity)
    so_far = delivered_by_pledge(session=session, pledge_ids=[pledge.id]).get(pledge.id, Decimal(0))
    left = pledge.accepted_quantity - so_far
    if data.quantity > left:
        raise Conflict(
            N_("Only {left} {unit} of this pledge are still to arrive."),
            field="quantity",
            left=_plain(left),
            unit=Label(UNIT_LABELS[need.unit]),
        )
    receipt = Receipt(
        **data.model_dump(exclude={"received_at"}),
        received_at=received_at,
        pledge_id=pledge.id,
        recorded_by_id=actor.id,
    )
    session.add(receipt)
    audit.record(session, actor=actor, action="receipt.create", entity=receipt)
    before = audit.snapshot(pledge)
    pledge.overdue_since = None
    if data.quantity == left:
        pledge.status = PledgeStatus.delivered
        audit.record(session, actor=actor, action="pledge.delivered", entity=pledge, before=before)
    session.add(pledge)
    session.commit()
    return receipt


def receipts_of(*, session: Session, pledge: Pledge, limit: int | None = None, offset: int = 0) -> list[Receipt]:
    """The receipts of a pledge, in the order things arrived."""
    query = select(Receipt).where(Receipt.pledge_id == pledge.id).order_by(Receipt.received_at, Receipt.id)
    return list(session.exec(query.offset(offset).limit(limit)))


def pledges_of_need(
    *, session: Session, need: Need, organisation_id: int | None = None, limit: int | None = None, offset: int = 0
) -> list[Pledge]:
    """A need's pledges (only one organisation's, when given), the newest first."""
    query = select(Pledge).where(Pledge.need_id == need.id)
    if organisation_id is not None:
        query = query.where(Pledge.organisation_id == organisation_id)
    return list(session.exec(query.order_by(col(Pledge.id).desc()).offset(offset).limit(limit)))


def list_pledges(
    *,
    session: Session,
    organisation_id: int | None = None,
    status: PledgeStatus | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Pledge], int]:
    """Pledges, the newest first, filtered, and how many match."""
    query, count = select(Pledge), select(sa.func.count()).select_from(Pledge)
    for condition in filter(
        lambda c: c is not None,
        [
            (Pledge.organisation_id == organisation_id) if organisation_id is not None else None,
            (Pledge.status == status) if status is not None else None,
        ],
    ):
        query, count = query.where(condition), count.where(condition)
    return list(session.exec(query.order_by(col(Pledge.id).desc()).offset(offset).limit(limit))), session.exec(
        count
    ).one()


def overdue_pledges(*, session: Session, emergency: Emergency) -> list[tuple[Pledge, Need, Organisation]]:
    """Accepted or in-transit pledges of an emergency past their deliver-by with nothing received."""
    received = select(Receipt.id).where(Receipt.pledge_id == Pledge.id)
    rows = session.exec(
        select(Pledge, Need, Organisation)
        .join(Need, col(Need.id) == Pledge.need_id)
        .join(Organisation, col(Organisation.id) == Pledge.organisation_id)
        .where(
            Need.emergency_id == emergency.id,
            col(Pledge.status).in_([PledgeStatus.accepted, PledgeStatus.in_transit]),
            col(Pledge.deliver_by) < utcnow(),
            ~sa.exists(received),
        )
        .order_by(Pledge.deliver_by)
    )
    return list(rows.all())


def _notify_partner(session: Session, pledge: Pledge, status: PledgeStatus) -> None:
    """Queues an e-mail to the organisation's active partner users about their pledge's new status."""
    from service.config import settings

    need = session.get(Need, pledge.need_id)
    subjects = {
        PledgeStatus.accepted: N_("Your pledge was accepted: {item}"),
        PledgeStatus.declined: N_("Your pledge was declined: {item}"),
        PledgeStatus.cancelled: N_("Your pledge was cancelled: {item}"),
    }
    if status not in subjects:
        return
    users = session.exec(select(User).where(User.organisation_id == pledge.organisation_id, col(User.is_active))).all()
    for user in users:
        if not user.has_role(Role.partner):
            continue
        _ = gettext_in(user.language)
        # What was agreed, once it was; the offer before that.
        quantity = pledge.accepted_quantity if pledge.accepted_quantity is not None else pledge.quantity
        lines = [
            _("Item: {item}").format(item=need.item_name),
            _("Quantity: {quantity} {unit}").format(
                quantity=format_number(quantity, user.language), unit=_(UNIT_LABELS[need.unit])
            ),
            _("Deliver to: {place}").format(place=need.deliver_to),
        ]
        if pledge.status_reason:
            lines.append(_("Reason: {reason}").format(reason=_(pledge.status_reason)))
        lines += ["", f"{settings.base_url.rstrip('/')}/portal/pledges#pledge-{pledge.id}"]
        notifications.enqueue(
            session=session,
            to_address=user.email,
            subject=_(subjects[status]).format(item=need.item_name),
            body="\n".join(lines),
            dedupe_key=f"pledge.{status.value}:{pledge.id}:{user.id}",
        )


# --- unsolicited offers ----------------------------------------------------------------------------------


def create_offer(*, session: Session, actor: User, organisation: Organisation, data: OfferCreate) -> Offer:
    """Records an offer that no need asked for; it waits in the staff's triage list."""
    if organisation.verification_status == VerificationStatus.suspended:
        raise Conflict(N_("A suspended organisation cannot make offers."))
    _check_whole(data.unit, data.quantity)
    offer = Offer(
        **data.model_dump(exclude={"organisation_id"}), organisation_id=organisation.id, created_by_id=actor.id
    )
    session.add(offer)
    audit.record(session, actor=actor, action="offer.create", entity=offer)
    session.commit()
    return offer


def convert_offer(*, session: Session, actor: User, offer: Offer, data: OfferConvert) -> Pledge:
    """Turns an offer into an accepted pledge against a need, if it fits what the need still lacks."""
    _require(offer.status == OfferStatus.offered, N_("This offer was already dealt with."))
    _check_future(data.deliver_by, "deliver_by")
    need = session.get(Need, data.need_id)
    if need is None:
        raise Invalid(N_("There is no need with this id."), field="need_id")
    if need.unit != offer.unit:
        raise Invalid(
            N_("The need is counted in {unit}; the offer is not."), field="need_id", unit=Label(UNIT_LABELS[need.unit])
        )
    quantity = data.quantity if data.quantity is not None else offer.quantity
    if quantity > offer.quantity:
        raise Invalid(N_("You cannot accept more than was offered."), field="quantity")
    need, emergency_status, pledged = _lock_need_to_pledge(session, need.id)
    offer = _lock_row(session, Offer, offer.id)  # two staff converting one offer make one pledge
    _require(offer.status == OfferStatus.offered, N_("This offer was already dealt with."))
    organisation = session.get(Organisation, offer.organisation_id)
    check_new_pledge(need, emergency_status, organisation.verification_status, quantity, pledged)
    now = utcnow()
    pledge = Pledge(
        need_id=need.id,
        organisation_id=offer.organisation_id,
        quantity=quantity,
        accepted_quantity=quantity,
        available_from=data.available_from,
        deliver_by=data.deliver_by,
        note=offer.note,
        status=PledgeStatus.accepted,
        offer_id=offer.id,
        created_by_id=actor.id,
        decided_at=now,
        decided_by_id=actor.id,
    )
    before = audit.snapshot(offer)
    offer.status = OfferStatus.converted
    session.add_all([pledge, offer])
    audit.record(session, actor=actor, action="offer.convert", entity=offer, before=before)
    audit.record(session, actor=actor, action="pledge.create", entity=pledge)
    session.flush()
    _notify_partner(session, pledge, PledgeStatus.accepted)
    session.commit()
    return pledge


def decline_offer(*, session: Session, actor: User, offer: Offer, reason: str) -> Offer:
    """Declines an offer, with the reason."""
    offer = _lock_row(session, Offer, offer.id)
    _require(offer.status == OfferStatus.offered, N_("This offer was already dealt with."))
    before = audit.snapshot(offer)
    offer.status = OfferStatus.declined
    offer.status_reason = reason
    session.add(offer)
    audit.record(session, actor=actor, action="offer.decline", entity=offer, before=before)
    session.commit()
    return offer


def list_offers(
    *,
    session: Session,
    organisation_id: int | None = None,
    status: OfferStatus | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Offer], int]:
    """Offers, filtered, and how many match: the staff's triage list oldest first (first come, first
    seen), an organisation's own list newest first."""
    query, count = select(Offer), select(sa.func.count()).select_from(Offer)
    if organisation_id is not None:
        query, count = (
            query.where(Offer.organisation_id == organisation_id),
            count.where(Offer.organisation_id == organisation_id),
        )
    if status is not None:
        query, count = query.where(Offer.status == status), count.where(Offer.status == status)
    order = Offer.id if organisation_id is None else col(Offer.id).desc()
    return list(session.exec(query.order_by(order).offset(offset).limit(limit))), session.exec(count).one()


# --- jobs ------------------------------------------------------------------------------------------------


def expire_offered_pledges(*, session: Session) -> int:
    """Pledges still offered when their deliver-by passed become expired; returns how many."""
    due = session.exec(
        select(Pledge).where(Pledge.status == PledgeStatus.offered, col(Pledge.deliver_by) < utcnow())
    ).all()
    for pledge in due:
        _set_pledge_status(session, "system:emergencies.expire_pledges", pledge, PledgeStatus.expired)
    session.commit()
    return len(due)


def _remind_overdue(session: Session, pledge: Pledge, previous: datetime | None) -> None:
    """Queues the reminder that follows the one sent at `previous` (None: the first); a second run of the
    job, or a racing one, that saw the same `previous` makes the same dedupe key, so it is queued once."""
    from service.config import settings

    need = session.get(Need, pledge.need_id)
    users = session.exec(select(User).where(User.organisation_id == pledge.organisation_id, col(User.is_active))).all()
    for user in users:
        _ = gettext_in(user.language)
        notifications.enqueue(
            session=session,
            to_address=user.email,
            subject=_("Delivery overdue: {item}").format(item=need.item_name),
            body="\n".join(
                [
                    _("Your accepted pledge was due by {time} and nothing has arrived yet.").format(
                        time=format_datetime(pledge.deliver_by, user.language)
                    ),
                    _("Deliver to: {place}").format(place=need.deliver_to),
                    "",
                    f"{settings.base_url.rstrip('/')}/portal/pledges#pledge-{pledge.id}",
                ]
            ),
            dedupe_key=f"pledge.overdue:{pledge.id}:{user.id}:{previous.isoformat() if previous else 'first'}",
        )


def flag_overdue(*, session: Session) -> int:
    """Flags accepted or in-transit pledges past deliver-by with nothing received, reminding each partner
    at most once a day; returns how many reminders were queued."""
    now = utcnow()
    received = select(Receipt.id).where(Receipt.pledge_id == Pledge.id)
    late = session.exec(
        select(Pledge).where(
            col(Pledge.status).in_([PledgeStatus.accepted, PledgeStatus.in_transit]),
            col(Pledge.deliver_by) < now,
            ~sa.exists(received),
        )
    ).all()
    reminded = 0
    for pledge in late:
        before = audit.snapshot(pledge)
        newly_overdue = pledge.overdue_since is None
        pledge.overdue_since = pledge.overdue_since or now
        remind = pledge.last_reminder_at is None or pledge.last_reminder_at <= now - timedelta(days=1)
        if not (newly_overdue or remind):
            continue
        if remind:
            previous, pledge.last_reminder_at = pledge.last_reminder_at, now
            _remind_overdue(session, pledge, previous)
            reminded += 1
        session.add(pledge)
        audit.record(
            session, actor="system:emergencies.overdue_pledges", action="pledge.overdue", entity=pledge, before=before
        )
    session.commit()
    return reminded
