"""The rules of public updates and the rumour log.

An update goes draft → in review → published (or scheduled, then published by a job at its time) and may
later be retracted. Four eyes: the communications officer who approves is never the one who wrote it. What
the public saw is never edited in place: publication records revision 1, each correction the next one with
its reason, and the CAP messages (Alert, Update, Cancel) follow from those revisions.
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from service import audit
from service.bulletins import changes
from service.bulletins.models import (
    Bulletin,
    BulletinCategory,
    BulletinCreate,
    BulletinRevision,
    BulletinStatus,
    BulletinUpdate,
    CorrectionCreate,
    Rumour,
    RumourCreate,
    RumourStatus,
    RumourUpdate,
    VerdictBody,
)
from service.db import utcnow
from service.emergencies.models import Emergency
from service.errors import Conflict, Forbidden, Invalid, NotFound
from service.i18n import N_, gettext_in
from service.users.models import User

NO_SUCH_BULLETIN = N_("There is no public update with this id.")
NO_SUCH_RUMOUR = N_("There is no rumour with this id.")
CLOCK_SKEW_SECONDS = 300


class WrongState(Conflict):
    """An action the status machine does not allow from the current state."""


def _require(condition: bool, message: str, **params: object) -> None:
    if not condition:
        raise WrongState(message, **params)


def _check_emergency(session: Session, emergency_id: int | None) -> None:
    if emergency_id is not None and session.get(Emergency, emergency_id) is None:
        raise Invalid(N_("There is no emergency with this id."), field="emergency_id")


def _check_times(bulletin: Bulletin) -> None:
    if bulletin.effective and bulletin.expires and bulletin.expires <= bulletin.effective:
        raise Invalid(N_("It must expire after it takes effect."), field="expires")


# --- bulletins -------------------------------------------------------------------------------------------


def get(*, session: Session, bulletin_id: int) -> Bulletin:
    bulletin = session.get(Bulletin, bulletin_id)
    if bulletin is None:
        raise NotFound(NO_SUCH_BULLETIN)
    return bulletin


def list_bulletins(
    *, session: Session, status: BulletinStatus | None = None, emergency_id: int | None = None,
    language: str | None = None, limit: int = 50, offset: int = 0,
) -> tuple[list[Bulletin], int]:  # fmt: skip
    """Staff's list: the most recently changed first."""
    query = select(Bulletin)
    if status is not None:
        query = query.where(Bulletin.status == status)
    if emergency_id is not None:
        query = query.where(Bulletin.emergency_id == emergency_id)
    if language is not None:
        query = query.where(Bulletin.language == language)
    total = session.exec(select(sa.func.count()).select_from(query.subquery())).one()
    items = session.exec(
        query.order_by(col(Bulletin.updated_at).desc(), col(Bulletin.id).desc()).offset(offset).limit(limit)
    )
    return list(items), total


def create(*, session: Session, actor: User, data: BulletinCreate) -> Bulletin:
    """A new draft, written by `actor`."""
    _check_emergency(session, data.emergency_id)
    bulletin = Bulletin(**data.model_dump(), created_by_id=actor.id, editor_ids=[actor.id])
    _check_times(bulletin)
    session.add(bulletin)
    audit.record(session, actor=actor, action="bulletin.create", entity=bulletin)
    session.commit()
    return bulletin


def update(*, session: Session, actor: User, bulletin: Bulletin, data: BulletinUpdate) -> Bulletin:
    """Changes a draft; in review or later it is frozen (the reviewer sends it back to change it)."""
    _require(bulletin.status == BulletinStatus.draft, N_("Only a draft can be edited."))
    before = audit.snapshot(bulletin)
    values = data.model_dump(exclude_unset=True)
    nullable = {"emergency_id", "polygon", "effective", "expires", "publish_at"}
    for field, value in values.items():
        if value is None and field not in nullable:
            raise Invalid(N_("This field cannot be empty."), field=field)
    if "emergency_id" in values:
        _check_emergency(session, values["emergency_id"])
    for field, value in values.items():
        setattr(bulletin, field, value)
    _check_times(bulletin)
    if actor.id not in bulletin.editor_ids:
        bulletin.editor_ids = [*bulletin.editor_ids, actor.id]
    bulletin.updated_at = utcnow()
    session.add(bulletin)
    audit.record(session, actor=actor, action="bulletin.update", entity=bulletin, before=before)
    session.commit()
    return bulletin


def discard(*, session: Session, actor: User, bulletin: Bulletin) -> None:
    """Deletes a draft that was never published (nothing public refers to it)."""
    _require(bulletin.status == BulletinStatus.draft, N_("Only a draft can be deleted."))
    before = audit.snapshot(bulletin)
    for rumour in session.exec(select(Rumour).where(Rumour.bulletin_id == bulletin.id)):
        rumour.bulletin_id = None
        session.add(rumour)
    audit.record(
        session, actor=actor, action="bulletin.discard", entity_name="bulletin", entity_id=bulletin.id, before=before
    )
    session.delete(bulletin)
    session.commit()


def submit(*, session: Session, actor: User, bulletin: Bulletin) -> Bulletin:
    """Sends a draft for review by a second officer."""
    _require(bulletin.status == BulletinStatus.draft, N_("Only a draft can be submitted for review."))
    return _move(session, actor, bulletin, BulletinStatus.in_review, "bulletin.submit", submitted_at=utcnow())


def send_back(*, session: Session, actor: User, bulletin: Bulletin, reason: str) -> Bulletin:
    """The reviewer returns an update in review (or a scheduled one, before its time) to its author."""
    _require(
        bulletin.status in (BulletinStatus.in_review, BulletinStatus.scheduled),
        N_("Only an update in review or scheduled can be sent back."),
    )
    changes.mark(session, bulletin.id)
    return _move(
        session, actor, bulletin, BulletinStatus.draft, "bulletin.send_back", review_note=reason, approved_at=None,
        approved_by_id=None,
    )  # fmt: skip


def approve(*, session: Session, actor: User, bulletin: Bulletin, publish_at: datetime | None = None) -> Bulletin:
    """The second pair of eyes: publishes now, or schedules for `publish_at` (or the draft's own time)."""
    _require(bulletin.status == BulletinStatus.in_review, N_("Only an update in review can be approved."))
    if not may_approve(bulletin, actor):
        raise Forbidden(N_("Another communications officer must approve what you wrote."))
    when = publish_at or bulletin.publish_at
    now = utcnow()
    if publish_at is not None and publish_at.timestamp() < now.timestamp() - CLOCK_SKEW_SECONDS:
        raise Invalid(N_("This time has already passed."), field="publish_at")
    fields = {"approved_at": now, "approved_by_id": actor.id, "publish_at": when, "review_note": ""}
    if when is not None and when > now:
        return _move(session, actor, bulletin, BulletinStatus.scheduled, "bulletin.schedule", **fields)
    _publish(session, bulletin, actor)
    return _move(session, actor, bulletin, BulletinStatus.published, "bulletin.approve", **fields)


def due_query(now: datetime | None = None) -> Any:
    """Scheduled updates whose time has come, in order."""
    return (
        select(Bulletin)
        .where(Bulletin.status == BulletinStatus.scheduled, col(Bulletin.publish_at) <= (now or utcnow()))
        .order_by(Bulletin.publish_at, Bulletin.id)
    )


def may_approve(bulletin: Bulletin, user: User) -> bool:
    """Four eyes: nobody who wrote any of an update's content approves it."""
    return user.id != bulletin.created_by_id and user.id not in bulletin.editor_ids


def publish_due(*, session: Session, now: datetime | None = None) -> list[int]:
    """Publishes the scheduled updates whose time has come (the job's work; a second run finds none)."""
    due = session.exec(due_query(now).with_for_update()).all()
    for bulletin in due:
        before = audit.snapshot(bulletin)
        _publish(session, bulletin, None)
        bulletin.status = BulletinStatus.published
        session.add(bulletin)
        audit.record(session, actor=None, action="bulletin.publish", entity=bulletin, before=before)
    if due:
        session.commit()
    return [b.id for b in due]


def _publish(session: Session, bulletin: Bulletin, actor: User | None) -> None:
    now = utcnow()
    bulletin.published_at = now
    bulletin.revision = 1
    session.add(
        BulletinRevision(
            bulletin_id=bulletin.id, number=1, title=bulletin.title, body=bulletin.body,
            instruction=bulletin.instruction, created_at=now, created_by_id=actor.id if actor else None,
        )
    )  # fmt: skip
    changes.mark(session, bulletin.id)


def correct(*, session: Session, actor: User, bulletin: Bulletin, data: CorrectionCreate) -> Bulletin:
    """Adds a revision to a published update: the public page says "corrected", the CAP feed an Update."""
    _require(bulletin.status == BulletinStatus.published, N_("Only a published update can be corrected."))
    title = data.title or bulletin.title
    instruction = bulletin.instruction if data.instruction is None else data.instruction
    if (title, data.body, instruction) == (bulletin.title, bulletin.body, bulletin.instruction):
        raise Invalid(N_("The correction changes nothing."), field="body")
    before = audit.snapshot(bulletin)
    now = utcnow()
    number = bulletin.revision + 1
    session.add(
        BulletinRevision(
            bulletin_id=bulletin.id, number=number, title=title, body=data.body, instruction=instruction,
            reason=data.reason, created_at=now, created_by_id=actor.id,
        )
    )  # fmt: skip
    bulletin.title, bulletin.body, bulletin.instruction = title, data.body, instruction
    bulletin.revision = number
    bulletin.corrected_at = bulletin.updated_at = now
    session.add(bulletin)
    audit.record(session, actor=actor, action="bulletin.correct", entity=bulletin, before=before)
    changes.mark(session, bulletin.id)
    session.commit()
    return bulletin


def retract(*, session: Session, actor: User, bulletin: Bulletin, reason: str) -> Bulletin:
    """Withdraws a published update: its page stays with a notice, the CAP feed a Cancel."""
    _require(bulletin.status == BulletinStatus.published, N_("Only a published update can be retracted."))
    changes.mark(session, bulletin.id)
    now = utcnow()
    return _move(
        session, actor, bulletin, BulletinStatus.retracted, "bulletin.retract", retracted_at=now,
        retracted_by_id=actor.id, retraction_reason=reason,
    )  # fmt: skip


def _move(session: Session, actor: User, bulletin: Bulletin, status: BulletinStatus, action: str, **fields) -> Bulletin:
    before = audit.snapshot(bulletin)
    bulletin.status = status
    for name, value in fields.items():
        setattr(bulletin, name, value)
    bulletin.updated_at = utcnow()
    session.add(bulletin)
    audit.record(session, actor=actor, action=action, entity=bulletin, before=before)
    session.commit()
    return bulletin


def revisions(
    *, session: Session, bulletin_id: int, limit: int | None = None, offset: int = 0
) -> list[BulletinRevision]:
    """What the public saw, revision 1 first."""
    return list(
        session.exec(
            select(BulletinRevision)
            .where(BulletinRevision.bulletin_id == bulletin_id)
            .order_by(BulletinRevision.number)
            .offset(offset)
            .limit(limit)
        )
    )


# --- rumours ---------------------------------------------------------------------------------------------


def get_rumour(*, session: Session, rumour_id: int) -> Rumour:
    rumour = session.get(Rumour, rumour_id)
    if rumour is None:
        raise NotFound(NO_SUCH_RUMOUR)
    return rumour


def list_rumours(
    *, session: Session, status: RumourStatus | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[Rumour], int]:
    """The rumour log: unresolved and riskiest first, then the most recently seen."""
    query = select(Rumour)
    if status is not None:
        query = query.where(Rumour.status == status)
    total = session.exec(select(sa.func.count()).select_from(query.subquery())).one()
    risk_order = sa.case({"high": 0, "medium": 1, "low": 2}, value=Rumour.risk, else_=3)
    resolved_last = sa.case((Rumour.status == RumourStatus.resolved, 1), else_=0)
    items = session.exec(
        query.order_by(resolved_last, risk_order, col(Rumour.last_seen).desc(), col(Rumour.id).desc())
        .offset(offset)
        .limit(limit)
    )
    return list(items), total


def _check_seen(rumour: Rumour) -> None:
    if rumour.last_seen < rumour.first_seen:
        raise Invalid(N_("It cannot be last seen before it was first seen."), field="last_seen")


def log_rumour(*, session: Session, actor: User, data: RumourCreate) -> Rumour:
    """Records a rumour as it circulates."""
    now = utcnow()
    values = data.model_dump()
    values["first_seen"] = values["first_seen"] or min(now, values["last_seen"] or now)
    values["last_seen"] = values["last_seen"] or max(now, values["first_seen"])
    rumour = Rumour(**values, created_by_id=actor.id)
    _check_seen(rumour)
    session.add(rumour)
    audit.record(session, actor=actor, action="rumour.create", entity=rumour)
    session.commit()
    return rumour


def _check_bulletin(session: Session, bulletin_id: int | None) -> None:
    if bulletin_id is not None and session.get(Bulletin, bulletin_id) is None:
        raise Invalid(NO_SUCH_BULLETIN, field="bulletin_id")


def update_rumour(*, session: Session, actor: User, rumour: Rumour, data: RumourUpdate) -> Rumour:
    """Changes what is known of a rumour; `status` only moves new → investigating here (a verdict resolves it)."""
    values = data.model_dump(exclude_unset=True)
    nullable = {"url", "bulletin_id"}
    for field, value in values.items():
        if value is None and field not in nullable:
            raise Invalid(N_("This field cannot be empty."), field=field)
    if {"wording", "summary", "language"} & values.keys():
        _require_unanswered(session, rumour)
    status = values.pop("status", None)
    if (
        status is not None
        and status != rumour.status
        and (status != RumourStatus.investigating or rumour.status != RumourStatus.new)
    ):
        raise WrongState(N_("A rumour is resolved by its verdict; only a new one can be put under investigation."))
    if "bulletin_id" in values:
        _check_bulletin(session, values["bulletin_id"])
    before = audit.snapshot(rumour)
    for field, value in values.items():
        setattr(rumour, field, value)
    if status is not None:
        rumour.status = status
    _check_seen(rumour)
    rumour.updated_at = utcnow()
    session.add(rumour)
    audit.record(session, actor=actor, action="rumour.update", entity=rumour, before=before)
    _mark_rumour(session, rumour)
    session.commit()
    return rumour


def record_verdict(*, session: Session, actor: User, rumour: Rumour, data: VerdictBody) -> Rumour:
    """The verdict with its evidence and the approved response; recording it again revises it."""
    if data.bulletin_id is not None:
        _check_bulletin(session, data.bulletin_id)
    _require_unanswered(session, rumour)
    before = audit.snapshot(rumour)
    rumour.verdict, rumour.evidence, rumour.response = data.verdict, data.evidence, data.response
    if data.bulletin_id is not None:
        rumour.bulletin_id = data.bulletin_id
    rumour.status = RumourStatus.resolved
    rumour.verdict_at = rumour.updated_at = utcnow()
    rumour.verdict_by_id = actor.id
    session.add(rumour)
    audit.record(session, actor=actor, action="rumour.verdict", entity=rumour, before=before)
    _mark_rumour(session, rumour)
    session.commit()
    return rumour


def _require_unanswered(session: Session, rumour: Rumour) -> None:
    """What a reviewed fact-check says (the claim, the verdict) changes only through review: while its
    answering update is in review, scheduled or public, the rumour's claim and verdict stay as reviewed."""
    answer = session.get(Bulletin, rumour.bulletin_id) if rumour.bulletin_id else None
    _require(
        answer is None or answer.status in (BulletinStatus.draft, BulletinStatus.retracted),
        N_("Its fact-check (update #{id}) is in review or published: send it back or retract it first."),
        id=rumour.bulletin_id,
    )


def _mark_rumour(session: Session, rumour: Rumour) -> None:
    """A published fact-check shows the rumour: the lists and its answering update's page change."""
    changes.mark_shared(session)
    if rumour.bulletin_id is not None:
        changes.mark(session, rumour.bulletin_id)


def draft_fact_check(*, session: Session, actor: User, rumour: Rumour, area_desc: str) -> Bulletin:
    """A draft public update answering a rumour with its response; it goes through review like any other."""
    _require(rumour.verdict is not None, N_("Record the verdict before drafting the fact-check."))
    if rumour.bulletin_id is not None:
        existing = session.get(Bulletin, rumour.bulletin_id)
        _require(
            existing is None or existing.status == BulletinStatus.retracted,
            N_("This rumour already has its public update (#{id})."),
            id=rumour.bulletin_id,
        )
    _ = gettext_in(rumour.language)
    summary = rumour.summary or rumour.wording
    title = _("Fact check: {claim}").format(claim=summary if len(summary) <= 150 else summary[:149] + "…")
    bulletin = Bulletin(
        title=title[:200], body=rumour.response, language=rumour.language, category=BulletinCategory.correction,
        area_desc=area_desc, created_by_id=actor.id,
        # The response is the verdict's author's text: they do not approve it either.
        editor_ids=sorted({actor.id} | ({rumour.verdict_by_id} if rumour.verdict_by_id else set())),
    )  # fmt: skip
    session.add(bulletin)
    session.flush()
    before = audit.snapshot(rumour)
    rumour.bulletin_id = bulletin.id
    rumour.updated_at = utcnow()
    session.add(rumour)
    audit.record(session, actor=actor, action="bulletin.create", entity=bulletin)
    audit.record(session, actor=actor, action="rumour.update", entity=rumour, before=before)
    session.commit()
    return bulletin


# --- what the public sees --------------------------------------------------------------------------------


def published(
    *, session: Session, language: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[Bulletin], int]:
    """Published (current) updates, the newest first; retracted ones are never listed as current."""
    query = select(Bulletin).where(Bulletin.status == BulletinStatus.published)
    if language is not None:
        query = query.where(Bulletin.language == language)
    total = session.exec(select(sa.func.count()).select_from(query.subquery())).one()
    items = session.exec(
        query.order_by(col(Bulletin.published_at).desc(), col(Bulletin.id).desc()).offset(offset).limit(limit)
    )
    return list(items), total


def public_bulletin(*, session: Session, bulletin_id: int) -> Bulletin:
    """A published or retracted update; anything else is the same 404 as a missing id."""
    bulletin = session.get(Bulletin, bulletin_id)
    if bulletin is None or bulletin.status not in (BulletinStatus.published, BulletinStatus.retracted):
        raise NotFound(NO_SUCH_BULLETIN)
    return bulletin


def in_feed(*, session: Session, limit: int = 50) -> list[Bulletin]:
    """The feeds' entries: published and retracted updates, the most recently changed first."""
    changed = sa.func.coalesce(Bulletin.retracted_at, Bulletin.corrected_at, Bulletin.published_at)
    return list(
        session.exec(
            select(Bulletin)
            .where(col(Bulletin.status).in_([BulletinStatus.published, BulletinStatus.retracted]))
            .order_by(changed.desc(), col(Bulletin.id).desc())
            .limit(limit)
        )
    )


def public_ids(*, session: Session) -> list[int]:
    """Every update with a public page (published or retracted)."""
    return list(
        session.exec(
            select(Bulletin.id).where(col(Bulletin.status).in_([BulletinStatus.published, BulletinStatus.retracted]))
        )
    )


def fact_checks(*, session: Session, language: str | None = None, limit: int = 100) -> list[tuple[Rumour, Bulletin]]:
    """Rumours with a verdict whose answering update is published, the most recent first."""
    query = (
        select(Rumour, Bulletin)
        .join(Bulletin, Bulletin.id == Rumour.bulletin_id)
        .where(Rumour.status == RumourStatus.resolved, Bulletin.status == BulletinStatus.published)
    )
    if language is not None:
        query = query.where(Bulletin.language == language)
    return list(session.exec(query.order_by(col(Bulletin.published_at).desc(), col(Rumour.id).desc()).limit(limit)))
