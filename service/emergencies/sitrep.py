"""The situation report of an emergency for a time window, as JSON, a staff page and a PDF, and the job that
e-mails it every day.

Coverage, live pledges and overdue deliveries are as they stand when the report is made, computed by the coverage
board's own functions, so the report and the board agree at the same moment. What happened *in* the window
(receipts, pledges made, needs ended, updates, fact-checks and decisions published) counts from its start
(inclusive) to its end (exclusive).
"""

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from babel.dates import format_timedelta
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from pydantic import TypeAdapter
from pydantic.dataclasses import dataclass
from sqlmodel import Session, col, select

from service.audit import AuditEntry
from service.auth import check_csrf, require_roles
from service.bulletins.models import (
    Bulletin,
    BulletinCategory,
    BulletinStatus,
    Rumour,
    RumourStatus,
    Verdict,
)
from service.config import settings
from service.consultations import service as consultations
from service.consultations.models import Consultation, Decision
from service.db import Id, SessionDep, session_scope, utcnow
from service.emergencies import service
from service.emergencies.coverage import delivered_by_pledge
from service.emergencies.deps import NO_SUCH_EMERGENCY
from service.emergencies.models import (
    COVERAGE_LABELS,
    EMERGENCY_STATUS_LABELS,
    KIND_LABELS,
    LIVE_PLEDGE,
    NEED_STATUS_LABELS,
    PLEDGE_STATUS_LABELS,
    PRIORITY_LABELS,
    SEVERITY_LABELS,
    UNIT_LABELS,
    Coverage,
    Emergency,
    EmergencyPublic,
    EmergencyStatus,
    Need,
    NeedStatus,
    Pledge,
    PledgeStatus,
    Priority,
    QuantityOut,
    Receipt,
    Unit,
)
from service.errors import API_ERRORS, NotFound
from service.i18n import (
    N_,
    babel_locale,
    format_date,
    format_datetime,
    format_number,
    gettext_for,
    gettext_in,
    language_of,
    local_input_value,
    normalise_language,
    parse_local_datetime,
)
from service.memoranda.models import KIND_LABELS as MEMORANDUM_KIND_LABELS
from service.memoranda.models import STATUS_LABELS as MEMORANDUM_STATUS_LABELS
from service.memoranda.models import Memorandum, MemorandumStatus
from service.memoranda.service import parties_by_memorandum
from service.notifications import service as notifications
from service.notifications.models import OutboxMessage
from service.partners.models import Organisation, OrganisationKind
from service.scheduler import Job, job_engine
from service.users.models import Role, User
from service.web import NOT_A_TIME as FORM_NOT_A_TIME
from service.web import render, templates

DEFAULT_WINDOW = timedelta(hours=24)
MAX_WINDOW_DAYS = 366
ZERO = Decimal(0)
# The needs a report lists: drafts were never visible to partners, so they are left out.
ENDED_NEED = (NeedStatus.closed, NeedStatus.cancelled)
_NEED_EVENTS = ("need.create", "need.open", "need.closed", "need.cancelled")

NOT_A_TIME = N_("Enter a date and time, such as 2026-11-25T14:30 (local time) or with its offset.")
ENDS_BEFORE_START = N_("The window must end after it begins.")
TOO_LONG = N_("The window can be at most {days} days long.")
OUT_OF_RANGE = N_("This date is out of range.")
FORM_MESSAGES = {NOT_A_TIME: FORM_NOT_A_TIME}


# --- the report ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitAmount:
    unit: Unit
    quantity: QuantityOut


@dataclass(frozen=True)
class NeedLine:
    """A need with its coverage as the board shows it, and what of it arrived in the window."""

    id: int
    item_name: str
    sector: str
    unit: Unit
    priority: Priority
    status: NeedStatus
    deliver_to: str
    needed_by: datetime | None
    needed: QuantityOut
    pledged: QuantityOut
    delivered: QuantityOut
    remaining: QuantityOut
    pledge_coverage: Coverage
    delivery_coverage: Coverage
    delivered_in_window: QuantityOut
    ended_at: datetime | None


@dataclass(frozen=True)
class UnitTotals:
    """The sums of the open needs counted in one unit (quantities of different units never add up)."""

    unit: Unit
    needs: int
    needed: QuantityOut
    pledged: QuantityOut
    delivered: QuantityOut
    remaining: QuantityOut
    delivered_in_window: QuantityOut


@dataclass(frozen=True)
class StatusLine:
    """The emergency's pledges in one status: how many, how many were made in the window, and their quantity
    (accepted, or offered before acceptance) per unit."""

    status: PledgeStatus
    count: int
    made_in_window: int
    quantities: list[UnitAmount]


@dataclass(frozen=True)
class PartnerLine:
    organisation_id: int
    name: str
    pledges: int
    live_pledges: int
    delivered: list[UnitAmount]
    delivered_in_window: list[UnitAmount]


@dataclass(frozen=True)
class OverdueLine:
    pledge_id: int
    need_id: int
    item_name: str
    organisation_id: int
    organisation: str
    unit: Unit
    quantity: QuantityOut
    status: PledgeStatus
    deliver_by: datetime
    late_seconds: int


@dataclass(frozen=True)
class EngagedPartner:
    """An organisation with a live pledge made before the window's end, or a receipt in the window."""

    organisation_id: int
    name: str
    kind: OrganisationKind
    live_pledges: int
    receipts_in_window: int


@dataclass(frozen=True)
class MemorandumLine:
    id: int
    template: str
    status: MemorandumStatus
    parties: list[str]
    valid_from: date
    valid_until: date
    verification_code: str


@dataclass(frozen=True)
class UpdateLine:
    """A public update published in the window, about this emergency or general (`emergency_id` null)."""

    id: int
    title: str
    language: str
    category: BulletinCategory
    emergency_id: int | None
    published_at: datetime
    corrected_at: datetime | None
    retracted_at: datetime | None


@dataclass(frozen=True)
class FactCheckLine:
    """A rumour with a verdict whose answering update is published; published in the window."""

    rumour_id: int
    summary: str
    verdict: Verdict
    bulletin_id: int
    bulletin_title: str
    published_at: datetime


@dataclass(frozen=True)
class DecisionLine:
    """A decision on a consultation about this emergency, recorded or published in the window."""

    id: int
    consultation_id: int
    title: str
    decided_on: date
    recorded_at: datetime
    published_at: datetime | None
    tally: dict[str, int]


@dataclass(frozen=True)
class SituationReport:
    emergency: EmergencyPublic
    since: datetime
    until: datetime
    generated_at: datetime
    language: str
    municipality: str
    open_needs: list[NeedLine]
    ended_needs: list[NeedLine]
    totals: list[UnitTotals]
    short_of_pledges: int
    pledges_by_status: list[StatusLine]
    pledges_by_partner: list[PartnerLine]
    overdue: list[OverdueLine]
    partners_engaged: list[EngagedPartner]
    memoranda: list[MemorandumLine]
    updates: list[UpdateLine]
    fact_checks: list[FactCheckLine]
    decisions: list[DecisionLine]


REPORT_ADAPTER = TypeAdapter(SituationReport)


def _in(moment: datetime | None, since: datetime, until: datetime) -> bool:
    return moment is not None and since <= moment < until


def _amounts(sums: dict[Unit, Decimal]) -> list[UnitAmount]:
    return [UnitAmount(unit=unit, quantity=quantity) for unit, quantity in sorted(sums.items()) if quantity]


def _organisation_names(session: Session, ids: Iterable[int], language: str) -> dict[int, tuple[str, str]]:
    """(name in `language`, kind) per organisation, without loading their sectors."""
    ids = set(ids)
    if not ids:
        return {}
    rows = session.exec(
        select(Organisation.id, Organisation.name, Organisation.name_en, Organisation.kind).where(
            col(Organisation.id).in_(ids)
        )
    )
    return {i: ((name_en if language == "en" and name_en else name), kind) for i, name, name_en, kind in rows}


def _need_times(session: Session, needs: list[Need]) -> dict[int, tuple[datetime | None, datetime | None]]:
    """When each need opened to partners and when it was closed or cancelled, from the audit log (needs keep no
    such times); a need with no entries counts as open from its creation unless it is a draft."""
    times: dict[int, list[datetime | None]] = {n.id: [None, None] for n in needs}
    if needs:
        rows = session.exec(
            select(AuditEntry.entity_id, AuditEntry.action, AuditEntry.at, AuditEntry.after)
            .where(
                AuditEntry.entity == "need",
                col(AuditEntry.entity_id).in_(list(times)),
                col(AuditEntry.action).in_(_NEED_EVENTS),
            )
            .order_by(col(AuditEntry.id))
        )
        seen: set[int] = set()
        for need_id, action, at, after in rows:
            seen.add(need_id)
            if action == "need.open" or (action == "need.create" and json.loads(after or "{}").get("status") == "open"):
                times[need_id][0] = times[need_id][0] or at
            elif action in ("need.closed", "need.cancelled"):
                times[need_id][1] = at
        for need in needs:
            if need.id not in seen and need.status != NeedStatus.draft:
                times[need.id][0] = need.created_at
    return {need_id: (opened, ended) for need_id, (opened, ended) in times.items()}


def _window_receipts(session: Session, emergency: Emergency, since: datetime, until: datetime) -> list[tuple]:
    """(pledge id, need id, organisation id, unit, quantity) of every receipt in the window."""
    return list(
        session.exec(
            select(Receipt.pledge_id, Pledge.need_id, Pledge.organisation_id, Need.unit, Receipt.quantity)
            .join(Pledge, col(Pledge.id) == Receipt.pledge_id)
            .join(Need, col(Need.id) == Pledge.need_id)
            .where(
                Need.emergency_id == emergency.id,
                col(Receipt.received_at) >= since,
                col(Receipt.received_at) < until,
            )
        ).all()
    )


def _needs(
    session: Session, emergency: Emergency, since: datetime, until: datetime, receipts: list[tuple]
) -> tuple[list[NeedLine], list[NeedLine], list[UnitTotals], int]:
    """The needs open at the window's end and those closed or cancelled during it, with the board's coverage."""
    needs = service.needs_of(session=session, emergency=emergency)
    times = _need_times(session, needs)
    arrived: dict[int, Decimal] = defaultdict(Decimal)
    for _pledge_id, need_id, _org, _unit, quantity in receipts:
        arrived[need_id] += quantity
    shown = []
    for need in needs:
        opened, ended = times[need.id]
        if opened is None or opened >= until or (ended is not None and ended < since):
            continue
        if need.status in ENDED_NEED and ended is None:
            continue  # ended at a time nobody recorded: not known to fall in the window
        shown.append(need)
    open_lines, ended_lines = [], []
    totals: dict[Unit, list] = {}
    short = 0
    for view in service.needs_with_coverage(session=session, needs=shown):
        need, coverage = view.need, view.coverage
        ended = times[need.id][1]
        line = NeedLine(
            id=need.id,
            item_name=need.item_name,
            sector=need.sector.value,
            unit=need.unit,
            priority=need.priority,
            status=need.status,
            deliver_to=need.deliver_to,
            needed_by=need.needed_by,
            needed=coverage.needed,
            pledged=coverage.pledged,
            delivered=coverage.delivered,
            remaining=coverage.remaining,
            pledge_coverage=coverage.pledge_coverage,
            delivery_coverage=coverage.delivery_coverage,
            delivered_in_window=arrived.get(need.id, ZERO),
            ended_at=ended,
        )
        if need.status in ENDED_NEED and ended < until:
            ended_lines.append(line)
            continue
        open_lines.append(line)
        if need.status == NeedStatus.open and coverage.remaining > 0:
            short += 1
        sums = totals.setdefault(need.unit, [0, ZERO, ZERO, ZERO, ZERO, ZERO])
        sums[0] += 1
        for index, value in enumerate(
            (line.needed, line.pledged, line.delivered, line.remaining, line.delivered_in_window), start=1
        ):
            sums[index] += value
    unit_totals = [
        UnitTotals(
            unit=unit, needs=s[0], needed=s[1], pledged=s[2], delivered=s[3], remaining=s[4], delivered_in_window=s[5]
        )
        for unit, s in sorted(totals.items())
    ]
    return open_lines, ended_lines, unit_totals, short


def _pledges(
    session: Session, emergency: Emergency, since: datetime, until: datetime, receipts: list[tuple], language: str
) -> tuple[list[StatusLine], list[PartnerLine], list[EngagedPartner]]:
    """The emergency's pledges made before the window's end, by their status now and by organisation."""
    rows = session.exec(
        select(
            Pledge.id, Pledge.organisation_id, Pledge.status, Need.unit, Pledge.quantity, Pledge.accepted_quantity,
            Pledge.created_at,
        )
        .join(Need, col(Need.id) == Pledge.need_id)
        .where(Need.emergency_id == emergency.id, col(Pledge.created_at) < until)
    ).all()  # fmt: skip
    delivered = delivered_by_pledge(session=session, pledge_ids=[row[0] for row in rows])
    by_status: dict[PledgeStatus, list] = {}
    partners: dict[int, dict[str, Any]] = {}

    def partner(organisation_id: int) -> dict[str, Any]:
        return partners.setdefault(
            organisation_id,
            {"pledges": 0, "live": 0, "delivered": defaultdict(Decimal), "window": defaultdict(Decimal), "receipts": 0},
        )

    for pledge_id, organisation_id, status, unit, quantity, accepted, created_at in rows:
        counts = by_status.setdefault(status, [0, 0, defaultdict(Decimal)])
        counts[0] += 1
        counts[1] += _in(created_at, since, until)
        counts[2][unit] += accepted if accepted is not None else quantity
        entry = partner(organisation_id)
        entry["pledges"] += 1
        entry["live"] += status in LIVE_PLEDGE
        entry["delivered"][unit] += delivered.get(pledge_id, ZERO)
    for _pledge_id, _need_id, organisation_id, unit, quantity in receipts:
        entry = partner(organisation_id)
        entry["window"][unit] += quantity
        entry["receipts"] += 1
    names = _organisation_names(session, partners, language)
    statuses = [
        StatusLine(status=status, count=c[0], made_in_window=c[1], quantities=_amounts(c[2]))
        for status in PledgeStatus
        if (c := by_status.get(status))
    ]
    by_partner = sorted(
        (
            PartnerLine(
                organisation_id=org_id,
                name=names[org_id][0],
                pledges=entry["pledges"],
                live_pledges=entry["live"],
                delivered=_amounts(entry["delivered"]),
                delivered_in_window=_amounts(entry["window"]),
            )
            for org_id, entry in partners.items()
            if entry["pledges"]
        ),
        key=lambda line: (-line.pledges, line.name.casefold(), line.organisation_id),
    )
    engaged = sorted(
        (
            EngagedPartner(
                organisation_id=org_id,
                name=names[org_id][0],
                kind=names[org_id][1],
                live_pledges=entry["live"],
                receipts_in_window=entry["receipts"],
            )
            for org_id, entry in partners.items()
            if entry["live"] or entry["receipts"]
        ),
        key=lambda line: (line.name.casefold(), line.organisation_id),
    )
    return statuses, by_partner, engaged


def _overdue(session: Session, emergency: Emergency, now: datetime, language: str) -> list[OverdueLine]:
    """The board's overdue pledges (past deliver-by with nothing received), the longest overdue first."""
    lines = []
    for pledge, need, organisation in service.overdue_pledges(session=session, emergency=emergency):
        name = organisation.name_en if language == "en" and organisation.name_en else organisation.name
        lines.append(
            OverdueLine(
                pledge_id=pledge.id,
                need_id=need.id,
                item_name=need.item_name,
                organisation_id=organisation.id,
                organisation=name,
                unit=need.unit,
                quantity=pledge.accepted_quantity,
                status=pledge.status,
                deliver_by=pledge.deliver_by,
                late_seconds=int((now - pledge.deliver_by).total_seconds()),
            )
        )
    return lines


def _local_date(moment: datetime) -> date:
    return moment.astimezone(ZoneInfo(settings.timezone)).date()


def _memoranda(session: Session, since: datetime, until: datetime) -> list[MemorandumLine]:
    """Memoranda in force at some moment of the window: signed by all before its end, not ended before its start,
    and valid (by local calendar days) on one of its days."""
    found = session.exec(
        select(Memorandum)
        .where(
            col(Memorandum.activated_at).is_not(None),
            col(Memorandum.activated_at) < until,
            sa.or_(col(Memorandum.ended_at).is_(None), col(Memorandum.ended_at) >= since),
            col(Memorandum.valid_from) <= _local_date(until),
            col(Memorandum.valid_until) >= _local_date(since),
        )
        .order_by(col(Memorandum.valid_until), col(Memorandum.id))
    ).all()
    parties = parties_by_memorandum(session=session, memoranda=found)
    return [
        MemorandumLine(
            id=m.id,
            template=m.template,
            status=m.status,
            parties=[p.name for p in parties[m.id] if not p.is_municipality],
            valid_from=m.valid_from,
            valid_until=m.valid_until,
            verification_code=m.verification_code,
        )
        for m in found
    ]


def _about(emergency: Emergency) -> sa.ColumnElement:
    return sa.or_(Bulletin.emergency_id == emergency.id, col(Bulletin.emergency_id).is_(None))


def _updates(session: Session, emergency: Emergency, since: datetime, until: datetime) -> list[UpdateLine]:
    found = session.exec(
        select(Bulletin)
        .where(
            col(Bulletin.status).in_([BulletinStatus.published, BulletinStatus.retracted]),
            col(Bulletin.published_at) >= since,
            col(Bulletin.published_at) < until,
            _about(emergency),
        )
        .order_by(col(Bulletin.published_at), col(Bulletin.id))
    )
    return [
        UpdateLine(
            id=b.id,
            title=b.title,
            language=b.language,
            category=b.category,
            emergency_id=b.emergency_id,
            published_at=b.published_at,
            corrected_at=b.corrected_at,
            retracted_at=b.retracted_at,
        )
        for b in found
    ]


def _fact_checks(session: Session, emergency: Emergency, since: datetime, until: datetime) -> list[FactCheckLine]:
    """A fact-check is published once both its verdict and its published answer exist: at the later of the two."""
    rows = session.exec(
        select(Rumour, Bulletin)
        .join(Bulletin, col(Bulletin.id) == Rumour.bulletin_id)
        .where(
            Rumour.status == RumourStatus.resolved,
            Bulletin.status == BulletinStatus.published,
            col(Bulletin.published_at) < until,
            sa.or_(col(Bulletin.published_at) >= since, col(Rumour.verdict_at) >= since),
            _about(emergency),
        )
    ).all()
    lines = []
    for rumour, bulletin in rows:
        published = max(bulletin.published_at, rumour.verdict_at or bulletin.published_at)
        if _in(published, since, until):
            lines.append(
                FactCheckLine(
                    rumour_id=rumour.id,
                    summary=rumour.summary or rumour.wording,
                    verdict=rumour.verdict,
                    bulletin_id=bulletin.id,
                    bulletin_title=bulletin.title,
                    published_at=published,
                )
            )
    return sorted(lines, key=lambda line: (line.published_at, line.rumour_id))


def _decisions(session: Session, emergency: Emergency, since: datetime, until: datetime) -> list[DecisionLine]:
    rows = session.exec(
        select(Decision, Consultation.title)
        .join(Consultation, col(Consultation.id) == Decision.consultation_id)
        .where(
            Consultation.emergency_id == emergency.id,
            sa.or_(
                sa.and_(col(Decision.recorded_at) >= since, col(Decision.recorded_at) < until),
                sa.and_(col(Decision.published_at) >= since, col(Decision.published_at) < until),
            ),
        )
        .order_by(col(Decision.decided_on), col(Decision.id))
    ).all()
    return [
        DecisionLine(
            id=decision.id,
            consultation_id=decision.consultation_id,
            title=title,
            decided_on=decision.decided_on,
            recorded_at=decision.recorded_at,
            published_at=decision.published_at,
            tally=consultations.vote_tally(consultations.votes_of(session=session, decision_id=decision.id)),
        )
        for decision, title in rows
    ]


def build(
    *, session: Session, emergency: Emergency, since: datetime, until: datetime, language: str | None = None
) -> SituationReport:
    """The situation report of `emergency` for the window [since, until), names in `language`."""
    language = normalise_language(language) or settings.default_language
    now = utcnow()
    receipts = _window_receipts(session, emergency, since, until)
    open_needs, ended_needs, totals, short = _needs(session, emergency, since, until, receipts)
    by_status, by_partner, engaged = _pledges(session, emergency, since, until, receipts, language)
    return SituationReport(
        emergency=EmergencyPublic.model_validate(emergency.model_dump()),
        since=since,
        until=until,
        generated_at=now,
        language=language,
        municipality=settings.municipality_name_en if language == "en" else settings.municipality_name,
        open_needs=open_needs,
        ended_needs=ended_needs,
        totals=totals,
        short_of_pledges=short,
        pledges_by_status=by_status,
        pledges_by_partner=by_partner,
        overdue=_overdue(session, emergency, now, language),
        partners_engaged=engaged,
        memoranda=_memoranda(session, since, until),
        updates=_updates(session, emergency, since, until),
        fact_checks=_fact_checks(session, emergency, since, until),
        decisions=_decisions(session, emergency, since, until),
    )


# --- the window ------------------------------------------------------------------------------------------


class WindowError(ValueError):
    """A window that cannot be reported on; `field` is the query parameter to fix."""

    def __init__(self, field: str, message: str, **params: Any) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.params = params

    def text(self, gettext: Any, *, form: bool = False) -> str:
        """The message in the reader's language; on a form, whose field shows the format, the short one."""
        message = FORM_MESSAGES.get(self.message, self.message) if form else self.message
        return gettext(message).format(**self.params)


def _moment(field: str, value: str | None) -> datetime | None:
    try:
        return parse_local_datetime(value or "")
    except ValueError:
        raise WindowError(field, NOT_A_TIME) from None


def parse_window(
    from_text: str | None, to_text: str | None, *, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """The window [since, until) from the query's `from` and `to` (ISO 8601; without an offset, local time).
    Either may be left out: the window then ends now, or lasts 24 hours."""
    since, until = _moment("from", from_text), _moment("to", to_text)
    until = until or now or utcnow()
    if since is None:
        try:
            since = until - DEFAULT_WINDOW
        except OverflowError:
            raise WindowError("to", OUT_OF_RANGE) from None
    if since >= until:
        raise WindowError("to", ENDS_BEFORE_START)
    if until - since > timedelta(days=MAX_WINDOW_DAYS):
        raise WindowError("to", TOO_LONG, days=MAX_WINDOW_DAYS)
    return since, until


# --- the document ----------------------------------------------------------------------------------------


LABELS = {
    "kinds": KIND_LABELS,
    "severities": SEVERITY_LABELS,
    "emergency_status": EMERGENCY_STATUS_LABELS,
    "units": UNIT_LABELS,
    "priorities": PRIORITY_LABELS,
    "need_status": NEED_STATUS_LABELS,
    "pledge_status": PLEDGE_STATUS_LABELS,
    "coverage": COVERAGE_LABELS,
    "memorandum_kinds": MEMORANDUM_KIND_LABELS,
    "memorandum_status": MEMORANDUM_STATUS_LABELS,
}


def _labels() -> dict[str, dict]:
    from service.bulletins.models import CATEGORY_LABELS, VERDICT_LABELS
    from service.consultations.models import VOTE_LABELS
    from service.partners.models import KIND_LABELS as ORGANISATION_KIND_LABELS
    from service.partners.models import SECTOR_LABELS

    return {
        **LABELS,
        "sectors": SECTOR_LABELS,
        "organisation_kinds": ORGANISATION_KIND_LABELS,
        "categories": CATEGORY_LABELS,
        "verdicts": VERDICT_LABELS,
        "votes": VOTE_LABELS,
    }


def document_context(report: SituationReport) -> dict[str, Any]:
    """What both the page and the PDF render from, with the formatting of the report's language."""
    language = report.language
    locale = babel_locale(language)
    return {
        "report": report,
        "labels": _labels(),
        "_": gettext_in(language),
        "language": language,
        "fmt_number": lambda value: format_number(value, language),
        "fmt_datetime": lambda value: format_datetime(value, language),
        "fmt_date": lambda value: format_date(value, language),
        "fmt_late": lambda seconds: format_timedelta(timedelta(seconds=seconds), locale=locale),
        "amounts": lambda items: ", ".join(
            f"{format_number(a.quantity, language)} {gettext_in(language)(UNIT_LABELS[a.unit])}" for a in items
        ),
        "timezone": settings.timezone,
        "query": window_query(report.since, report.until),
    }


def window_query(since: datetime, until: datetime) -> str:
    """`from=...&to=...` of a window exactly (a link must open the very window it names): local times with their
    offset, which also tells apart the hour the clocks repeat in autumn; seconds only when there are any."""

    def local(moment: datetime) -> str:
        value = moment.astimezone(ZoneInfo(settings.timezone))
        precision = "microseconds" if value.microsecond else "seconds" if value.second else "minutes"
        return value.isoformat(timespec=precision)

    return urlencode({"from": local(since), "to": local(until)})


def render_html(report: SituationReport) -> str:
    """The PDF document's HTML, from the page environment (autoescaped)."""
    from service.memoranda.documents import coat_of_arms_url

    context = {**document_context(report), "coat_of_arms_url": coat_of_arms_url()}
    return templates.env.get_template("reports/sitrep.html").render(context)


def render_pdf(report: SituationReport) -> bytes:
    """The report as PDF, by the safe renderer (a killable worker, files below templates/ only). Slow: ~1 s."""
    from service import pdf

    return pdf.render_pdf(render_html(report), pdf_variant=None)


def pdf_filename(report: SituationReport) -> str:
    local = ZoneInfo(settings.timezone)
    return (
        f"sitrep-{report.emergency.id}-{report.since.astimezone(local):%Y%m%d-%H%M}"
        f"-{report.until.astimezone(local):%Y%m%d-%H%M}.pdf"
    )


# --- routes ----------------------------------------------------------------------------------------------


router = APIRouter(dependencies=[Depends(check_csrf)])

# Coordinators, communications officers and administrators read the report; partners do not.
ReportReader = Annotated[User, Depends(require_roles(Role.coordinator, Role.communications))]
FROM_HELP = "The window's start: ISO 8601; a time without an offset is local. Default: 24 hours before `to`."
TO_HELP = "The window's end (exclusive): ISO 8601; a time without an offset is local. Default: now."
FromParam = Annotated[str | None, Query(alias="from", max_length=64, description=FROM_HELP)]
ToParam = Annotated[str | None, Query(alias="to", max_length=64, description=TO_HELP)]


def reported_emergency(emergency_id: Id, user: ReportReader, session: SessionDep) -> Emergency:
    emergency = session.get(Emergency, emergency_id)
    if emergency is None:
        raise NotFound(NO_SUCH_EMERGENCY)
    return emergency


ReportedEmergency = Annotated[Emergency, Depends(reported_emergency)]


def _api_window(request: Request, from_text: str | None, to_text: str | None) -> tuple[datetime, datetime]:
    try:
        return parse_window(from_text, to_text)
    except WindowError as error:
        message = error.text(gettext_for(request))
        raise RequestValidationError(
            [
                {
                    "loc": ("query", error.field),
                    "msg": message,
                    "type": "value_error",
                    "input": request.query_params.get(error.field),
                }
            ]
        ) from None


def _pdf_response(report: SituationReport, session: Session) -> Response:
    session.rollback()  # the report is plain data now: no read transaction stays open through the render
    return Response(
        render_pdf(report),
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{pdf_filename(report)}"',
            "Cache-Control": "private, no-store",
        },
    )


@router.get(
    "/api/v1/emergencies/{emergency_id}/sitrep",
    response_model=SituationReport,
    responses=API_ERRORS,
    tags=["emergencies"],
)
def sitrep(
    request: Request, emergency: ReportedEmergency, session: SessionDep, from_: FromParam = None, to: ToParam = None
) -> SituationReport:
    """The situation report for a window (default: the last 24 hours). Coverage, live pledges and overdue
    deliveries are as they stand now, as on the coverage board; the rest is what happened in the window."""
    since, until = _api_window(request, from_, to)
    return build(session=session, emergency=emergency, since=since, until=until, language=language_of(request))


PDF_RESPONSES = {200: {"content": {"application/pdf": {}}, "description": "The report as PDF."}, **API_ERRORS}


@router.get(
    "/api/v1/emergencies/{emergency_id}/sitrep.pdf",
    response_class=Response,
    responses=PDF_RESPONSES,
    tags=["emergencies"],
)
def sitrep_pdf(
    request: Request, emergency: ReportedEmergency, session: SessionDep, from_: FromParam = None, to: ToParam = None
) -> Response:
    """The situation report as PDF (A4), in the reader's language."""
    since, until = _api_window(request, from_, to)
    report = build(session=session, emergency=emergency, since=since, until=until, language=language_of(request))
    return _pdf_response(report, session)


@router.get("/staff/emergencies/{emergency_id}/sitrep", response_class=HTMLResponse, include_in_schema=False)
def sitrep_page(
    request: Request, emergency: ReportedEmergency, session: SessionDep, from_: FromParam = None, to: ToParam = None
) -> Response:
    values = {"from": from_ or "", "to": to or ""}
    try:
        since, until = parse_window(from_, to)
    except WindowError as error:
        context = {
            "emergency": emergency,
            "values": values,
            "errors": {error.field: error.text(gettext_for(request), form=True)},
        }
        return render(request, "staff/emergencies/sitrep.html", {**context, "report": None}, 422)
    report = build(session=session, emergency=emergency, since=since, until=until, language=language_of(request))
    values = {"from": local_input_value(since), "to": local_input_value(until)}
    context = {**document_context(report), "emergency": emergency, "values": values, "errors": {}}
    return render(request, "staff/emergencies/sitrep.html", context)


@router.get("/staff/emergencies/{emergency_id}/sitrep.pdf", include_in_schema=False)
def sitrep_page_pdf(
    request: Request, emergency: ReportedEmergency, session: SessionDep, from_: FromParam = None, to: ToParam = None
) -> Response:
    try:
        since, until = parse_window(from_, to)
    except WindowError as error:
        return render(request, "errors/error.html", {"message": error.text(gettext_for(request), form=True)}, 422)
    report = build(session=session, emergency=emergency, since=since, until=until, language=language_of(request))
    return _pdf_response(report, session)


# --- the daily e-mail ------------------------------------------------------------------------------------


def recipients() -> list[str]:
    """The addresses of `settings.sitrep_recipients`, each once, in the order given."""
    found: dict[str, str] = {}
    for part in settings.sitrep_recipients.replace(";", ",").split(","):
        address = part.strip()
        if address and "@" in address:
            found.setdefault(address.casefold(), address)
    return list(found.values())


def daily_window(now: datetime) -> tuple[date, datetime, datetime] | None:
    """(the local day, the window) of the report due at `now`: the 24 hours up to today's report hour, once that
    hour has come; None before it."""
    zone = ZoneInfo(settings.timezone)
    local = now.astimezone(zone)
    due = datetime.combine(local.date(), time(settings.sitrep_hour), tzinfo=zone).astimezone(UTC)
    if now < due:
        return None
    return local.date(), due - DEFAULT_WINDOW, due


def dedupe_key(emergency_id: int, day: date, address: str) -> str:
    """One report a day per emergency and recipient (the outbox refuses a key it holds)."""
    key = f"sitrep:{emergency_id}:{day.isoformat()}:{address.casefold()}"
    if len(key) > 200:  # the column's size; a very long address is kept by its digest
        key = f"sitrep:{emergency_id}:{day.isoformat()}:{hashlib.sha256(address.casefold().encode()).hexdigest()}"
    return key


def report_urls(report: SituationReport) -> tuple[str, str]:
    """The staff page and the PDF of this report's window (both need a staff login)."""
    base = f"{settings.base_url.rstrip('/')}/staff/emergencies/{report.emergency.id}/sitrep"
    query = window_query(report.since, report.until)
    return f"{base}?{query}", f"{base}.pdf?{query}"


def summary_text(report: SituationReport) -> tuple[str, str]:
    """(subject, plain-text body) of the e-mail: the key numbers and the links."""
    language = report.language
    _ = gettext_in(language)

    def number(value: Any) -> str:
        return format_number(value, language)

    subject = _("Situation report: {title}, {date}").format(
        title=report.emergency.title, date=format_date(report.until, language)
    )
    lines = [
        _("Situation report: {title}").format(title=report.emergency.title),
        _("Window: {since} – {until}").format(
            since=format_datetime(report.since, language), until=format_datetime(report.until, language)
        ),
        _("Generated {time}; coverage as it stood then.").format(time=format_datetime(report.generated_at, language)),
        "",
        _("Open needs: {open} (still short of pledges: {short}); closed or cancelled in the window: {ended}").format(
            open=number(len(report.open_needs)),
            short=number(report.short_of_pledges),
            ended=number(len(report.ended_needs)),
        ),
    ]
    if report.totals:
        lines.append(_("Open needs per unit (needed / pledged / delivered / remaining):"))
        for total in report.totals:
            lines.append(
                f"  {_(UNIT_LABELS[total.unit])}: {number(total.needed)} / {number(total.pledged)} / "
                f"{number(total.delivered)} / {number(total.remaining)}"
            )
    if report.pledges_by_status:
        statuses = ", ".join(f"{_(PLEDGE_STATUS_LABELS[s.status])} {number(s.count)}" for s in report.pledges_by_status)
        lines.append(_("Pledges: {statuses}").format(statuses=statuses))
    lines += [
        _("Overdue deliveries: {count}").format(count=number(len(report.overdue))),
        _("Partners engaged: {count}").format(count=number(len(report.partners_engaged))),
        _("Memoranda in force: {count}").format(count=number(len(report.memoranda))),
        _("Public updates published: {updates}; fact-checks: {checks}").format(
            updates=number(len(report.updates)), checks=number(len(report.fact_checks))
        ),
        _("Decisions taken: {count}").format(count=number(len(report.decisions))),
        "",
    ]
    page, pdf = report_urls(report)
    lines += [_("The report: {url}").format(url=page), _("As PDF: {url}").format(url=pdf)]
    return subject, "\n".join(lines)


def queue_daily(*, session: Session, now: datetime | None = None) -> int:
    """Queues today's report of every active emergency to every configured recipient, once the report hour has
    come; a second run the same day queues nothing. Returns how many messages were queued."""
    now = now or utcnow()
    due = daily_window(now)
    addresses = recipients()
    if due is None or not addresses:
        return 0
    day, since, until = due
    languages = {
        u.email.casefold(): u.language
        for u in session.exec(select(User).where(sa.func.lower(User.email).in_([a.casefold() for a in addresses])))
    }
    # An emergency declared after the window's end has nothing to report for it yet: tomorrow's report is its first.
    emergencies = session.exec(
        select(Emergency)
        .where(Emergency.status == EmergencyStatus.active, col(Emergency.declared_at) < until)
        .order_by(col(Emergency.id))
    ).all()
    queued = 0
    for emergency in emergencies:
        keys = {address: dedupe_key(emergency.id, day, address) for address in addresses}
        # Checked before the report is built: the runs after the first each day build nothing.
        sent = set(
            session.exec(select(OutboxMessage.dedupe_key).where(col(OutboxMessage.dedupe_key).in_(keys.values())))
        )
        texts: dict[str, tuple[str, str]] = {}
        for address, key in keys.items():
            if key in sent:
                continue
            language = normalise_language(languages.get(address.casefold())) or settings.default_language
            if language not in texts:
                report = build(session=session, emergency=emergency, since=since, until=until, language=language)
                texts[language] = summary_text(report)
            subject, body = texts[language]
            queued += notifications.enqueue(
                session=session, to_address=address, subject=subject, body=body, dedupe_key=key
            )
    session.commit()
    return queued


def send_daily() -> None:
    """The daily situation report by e-mail, at `settings.sitrep_hour` local time."""
    with session_scope(job_engine(), write=True) as session:
        queue_daily(session=session)


# Every quarter of an hour: the report goes within 15 minutes of its hour, and once a day whatever the runs.
JOBS = [Job(id="emergencies.sitrep", func=send_daily, every_seconds=lambda: 900)]
