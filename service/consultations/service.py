"""The rules of consultations: who may take part, when submissions are taken, and decisions with their votes.

A consultation is drafted, then opened (the invited organisations, or every verified partner when it is
open to all, are told by e-mail); submissions are taken from `opens_at` until `closes_at`, each
organisation's revised in place; a job (or staff) closes it; staff record the decision with each
stakeholder's vote, and publish it to the public archive.
"""

import io
from collections import Counter
from datetime import datetime

import sqlalchemy as sa
from pypdf import PdfReader
from pypdf.errors import PyPdfError
from sqlmodel import Session, col, select

from service import audit
from service.bulletins import changes
from service.config import settings
from service.consultations.models import (
    Consultation,
    ConsultationCreate,
    ConsultationPublic,
    ConsultationStatus,
    ConsultationUpdate,
    Decision,
    DecisionCreate,
    DecisionPublic,
    DecisionVote,
    Invitation,
    Submission,
    SubmissionCreate,
    Vote,
    VoteIn,
)
from service.db import utcnow
from service.emergencies.models import Emergency
from service.errors import Conflict, Forbidden, Invalid, InvalidFields, NotFound
from service.i18n import N_, format_datetime, gettext_in
from service.memoranda import archive
from service.notifications import service as notifications
from service.partners.models import Organisation, VerificationStatus
from service.users.models import Role, User

NO_SUCH_CONSULTATION = N_("There is no consultation with this id.")
NO_SUCH_SUBMISSION = N_("There is no submission with this id.")


class WrongState(Conflict):
    """An action the status machine does not allow from the current state."""


def _require(condition: bool, message: str, **params: object) -> None:
    if not condition:
        raise WrongState(message, **params)


# --- reading ---------------------------------------------------------------------------------------------


def get(*, session: Session, consultation_id: int) -> Consultation:
    consultation = session.get(Consultation, consultation_id)
    if consultation is None:
        raise NotFound(NO_SUCH_CONSULTATION)
    return consultation


def invited_ids(*, session: Session, consultation_id: int) -> list[int]:
    return list(
        session.exec(
            select(Invitation.organisation_id)
            .where(Invitation.consultation_id == consultation_id)
            .order_by(Invitation.organisation_id)
        )
    )


def accepting(consultation: Consultation, now: datetime | None = None) -> bool:
    """Whether a submission is taken now: open, and between its opening and closing times."""
    now = now or utcnow()
    return consultation.status == ConsultationStatus.open and consultation.opens_at <= now < consultation.closes_at


def public_view(session: Session, consultation: Consultation) -> ConsultationPublic:
    return ConsultationPublic.model_validate(
        {**consultation.model_dump(), "invited_ids": invited_ids(session=session, consultation_id=consultation.id),
         "accepting": accepting(consultation)}
    )  # fmt: skip


def eligible_ids(*, session: Session, consultation: Consultation) -> set[int]:
    """The organisations that may take part (and vote): the invited, and every verified partner if open to all."""
    ids = set(invited_ids(session=session, consultation_id=consultation.id))
    if consultation.open_to_all:
        ids |= set(
            session.exec(select(Organisation.id).where(Organisation.verification_status == VerificationStatus.verified))
        )
    return ids


def may_take_part(*, session: Session, consultation: Consultation, organisation_id: int) -> bool:
    if consultation.status == ConsultationStatus.draft:
        return False
    if session.get(Invitation, (consultation.id, organisation_id)) is not None:
        return True
    if consultation.open_to_all:
        org = session.get(Organisation, organisation_id)
        return org is not None and org.verification_status == VerificationStatus.verified
    return False


def list_consultations(
    *, session: Session, status: ConsultationStatus | None = None, organisation_id: int | None = None,
    limit: int = 50, offset: int = 0,
) -> tuple[list[Consultation], int]:  # fmt: skip
    """Staff see all; with `organisation_id`, those the organisation may take part in (never drafts)."""
    query = select(Consultation)
    if status is not None:
        query = query.where(Consultation.status == status)
    if organisation_id is not None:
        org = session.get(Organisation, organisation_id)
        invited = select(Invitation.consultation_id).where(Invitation.organisation_id == organisation_id)
        condition = col(Consultation.id).in_(invited)
        if org is not None and org.verification_status == VerificationStatus.verified:
            condition = sa.or_(condition, col(Consultation.open_to_all))
        query = query.where(Consultation.status != ConsultationStatus.draft, condition)
    total = session.exec(select(sa.func.count()).select_from(query.subquery())).one()
    items = session.exec(
        query.order_by(col(Consultation.closes_at).desc(), col(Consultation.id).desc()).offset(offset).limit(limit)
    )
    return list(items), total


def submissions(
    *,
    session: Session,
    consultation_id: int,
    organisation_id: int | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Submission]:
    query = select(Submission).where(Submission.consultation_id == consultation_id)
    if organisation_id is not None:
        query = query.where(Submission.organisation_id == organisation_id)
    return list(session.exec(query.order_by(Submission.submitted_at, Submission.id).offset(offset).limit(limit)))


def get_submission(*, session: Session, consultation_id: int, submission_id: int) -> Submission:
    submission = session.get(Submission, submission_id)
    if submission is None or submission.consultation_id != consultation_id:
        raise NotFound(NO_SUCH_SUBMISSION)
    return submission


def position_tally(items: list[Submission]) -> dict[str, int]:
    counts = Counter(s.position.value for s in items)
    return {p: counts.get(p, 0) for p in ("support", "oppose", "amend")}


def decision_of(*, session: Session, consultation_id: int) -> Decision | None:
    return session.exec(select(Decision).where(Decision.consultation_id == consultation_id)).first()


def votes_of(*, session: Session, decision_id: int) -> list[DecisionVote]:
    return list(
        session.exec(
            select(DecisionVote).where(DecisionVote.decision_id == decision_id).order_by(DecisionVote.organisation_id)
        )
    )


def vote_tally(votes: list[DecisionVote]) -> dict[str, int]:
    counts = Counter(v.vote.value for v in votes)
    return {v.value: counts.get(v.value, 0) for v in Vote}


def decision_view(session: Session, decision: Decision) -> DecisionPublic:
    votes = votes_of(session=session, decision_id=decision.id)
    return DecisionPublic.model_validate(
        {**decision.model_dump(), "votes": [VoteIn(organisation_id=v.organisation_id, vote=v.vote) for v in votes],
         "tally": vote_tally(votes)}
    )  # fmt: skip


# --- staff -----------------------------------------------------------------------------------------------


def _check_fields(session: Session, consultation: Consultation, invited: list[int] | None) -> None:
    problems: dict[str, str] = {}
    if consultation.closes_at <= consultation.opens_at:
        problems["closes_at"] = N_("It must close after it opens.")
    if consultation.emergency_id is not None and session.get(Emergency, consultation.emergency_id) is None:
        problems["emergency_id"] = N_("There is no emergency with this id.")
    if invited:
        found = set(session.exec(select(Organisation.id).where(col(Organisation.id).in_(invited))))
        if found != set(invited):
            problems["invited_ids"] = N_("There is no organisation with this id.")
    if problems:
        raise InvalidFields(problems)


def _set_invitations(session: Session, consultation: Consultation, invited: list[int]) -> None:
    wanted = set(invited)
    current = set(invited_ids(session=session, consultation_id=consultation.id))
    for organisation_id in current - wanted:
        session.delete(session.get(Invitation, (consultation.id, organisation_id)))
    for organisation_id in sorted(wanted - current):
        session.add(Invitation(consultation_id=consultation.id, organisation_id=organisation_id))


def create(*, session: Session, actor: User, data: ConsultationCreate) -> Consultation:
    """A draft consultation with the organisations it invites."""
    values = data.model_dump(exclude={"invited_ids"})
    consultation = Consultation(**values, created_by_id=actor.id)
    _check_fields(session, consultation, data.invited_ids)
    session.add(consultation)
    session.flush()
    _set_invitations(session, consultation, data.invited_ids)
    audit.record(
        session, actor=actor, action="consultation.create", entity=consultation,
        after={**audit.snapshot(consultation), "invited_ids": sorted(set(data.invited_ids))},
    )  # fmt: skip
    session.commit()
    return consultation


def update(*, session: Session, actor: User, consultation: Consultation, data: ConsultationUpdate) -> Consultation:
    """Changes a draft (once open, invitations have gone out and the text is what partners answer)."""
    _require(consultation.status == ConsultationStatus.draft, N_("Only a draft consultation can be changed."))
    values = data.model_dump(exclude_unset=True)
    for field, value in values.items():
        if value is None and field not in ("emergency_id",):
            raise Invalid(N_("This field cannot be empty."), field=field)
    before = {
        **audit.snapshot(consultation),
        "invited_ids": invited_ids(session=session, consultation_id=consultation.id),
    }
    invited = values.pop("invited_ids", None)
    for field, value in values.items():
        setattr(consultation, field, value)
    with session.no_autoflush:  # an unknown emergency id must be reported, not flushed into a foreign-key error
        _check_fields(session, consultation, invited)
    if invited is not None:
        _set_invitations(session, consultation, invited)
    session.add(consultation)
    audit.record(session, actor=actor, action="consultation.update", entity=consultation, before=before)
    session.commit()
    return consultation


def open_consultation(*, session: Session, actor: User, consultation: Consultation) -> Consultation:
    """Opens a draft: the partner users of every organisation that may take part are told by e-mail."""
    _require(consultation.status == ConsultationStatus.draft, N_("Only a draft consultation can be opened."))
    if consultation.closes_at <= utcnow():
        raise Invalid(N_("Its closing time has already passed."), field="closes_at")
    eligible = eligible_ids(session=session, consultation=consultation)
    if not eligible:
        raise Invalid(N_("Invite at least one organisation, or open it to all verified partners."), field="invited_ids")
    before = audit.snapshot(consultation)
    consultation.status = ConsultationStatus.open
    consultation.opened_at = utcnow()
    session.add(consultation)
    audit.record(session, actor=actor, action="consultation.open", entity=consultation, before=before)
    _notify_opened(session, consultation, eligible)
    session.commit()
    return consultation


def _notify_opened(session: Session, consultation: Consultation, organisation_ids: set[int]) -> None:
    recipients = session.exec(
        select(User).where(col(User.organisation_id).in_(organisation_ids), col(User.is_active))
    ).all()
    for user in recipients:
        if Role.partner.value not in user.roles:
            continue
        _ = gettext_in(user.language)
        subject = _("Consultation opened: {title}").format(title=consultation.title)
        body = "\n\n".join(
            [
                _("Your organisation is invited to give its position in a public consultation of the municipality."),
                f"{consultation.title}\n{consultation.question}",
                _("Submissions are accepted from {opens} until {closes}.").format(
                    opens=format_datetime(consultation.opens_at, user.language),
                    closes=format_datetime(consultation.closes_at, user.language),
                ),
                f"{settings.base_url.rstrip('/')}/portal/consultations/{consultation.id}",
            ]
        )
        notifications.enqueue(
            session=session, to_address=user.email, subject=subject, body=body,
            dedupe_key=f"consultation-{consultation.id}-opened-{user.id}",
        )  # fmt: skip


def close(*, session: Session, actor: User | None, consultation: Consultation) -> Consultation:
    """Closes an open consultation (staff early, or the job at its closing time): no more submissions."""
    _require(consultation.status == ConsultationStatus.open, N_("Only an open consultation can be closed."))
    before = audit.snapshot(consultation)
    consultation.status = ConsultationStatus.closed
    consultation.closed_at = utcnow()
    session.add(consultation)
    audit.record(session, actor=actor, action="consultation.close", entity=consultation, before=before)
    session.commit()
    return consultation


def close_due(*, session: Session, now: datetime | None = None) -> list[int]:
    """Closes every open consultation whose closing time has passed (the job; a second run finds none)."""
    due = session.exec(
        select(Consultation)
        .where(Consultation.status == ConsultationStatus.open, col(Consultation.closes_at) <= (now or utcnow()))
        .with_for_update()
    ).all()
    for consultation in due:
        before = audit.snapshot(consultation)
        consultation.status = ConsultationStatus.closed
        consultation.closed_at = utcnow()
        session.add(consultation)
        audit.record(session, actor=None, action="consultation.close", entity=consultation, before=before)
    if due:
        session.commit()
    return [c.id for c in due]


def record_decision(*, session: Session, actor: User, consultation: Consultation, data: DecisionCreate) -> Decision:
    """Records (or, until published, replaces) the decision with each stakeholder's vote."""
    _require(
        consultation.status in (ConsultationStatus.closed, ConsultationStatus.decided),
        N_("The decision is recorded after the consultation has closed."),
    )
    decision = decision_of(session=session, consultation_id=consultation.id)
    _require(decision is None or decision.published_at is None, N_("The decision is already published."))
    problems: dict[str, str] = {}
    seen: set[int] = set()
    eligible = eligible_ids(session=session, consultation=consultation)
    for index, vote in enumerate(data.votes):
        if vote.organisation_id in seen:
            problems[f"votes.{index}.organisation_id"] = N_("This organisation already has a vote.")
        elif vote.organisation_id not in eligible:
            problems[f"votes.{index}.organisation_id"] = N_("Only organisations that were invited may vote.")
        seen.add(vote.organisation_id)
    if problems:
        raise InvalidFields(problems)
    before = None
    if decision is None:
        decision = Decision(consultation_id=consultation.id, text=data.text, decided_on=data.decided_on)
    else:
        before = {
            **audit.snapshot(decision),
            "votes": [audit.snapshot(v) for v in votes_of(session=session, decision_id=decision.id)],
        }
        decision.text, decision.decided_on = data.text, data.decided_on
        for vote in votes_of(session=session, decision_id=decision.id):
            session.delete(vote)
    decision.recorded_at = utcnow()
    decision.recorded_by_id = actor.id
    decision.search_text = "\n".join([consultation.title, consultation.question, data.text]).casefold()
    session.add(decision)
    session.flush()
    for vote in data.votes:
        session.add(DecisionVote(decision_id=decision.id, organisation_id=vote.organisation_id, vote=vote.vote))
    consultation.status = ConsultationStatus.decided
    session.add(consultation)
    audit.record(
        session, actor=actor, action="decision.record", entity=decision, before=before,
        after={**audit.snapshot(decision), "votes": [v.model_dump(mode="json") for v in data.votes]},
    )  # fmt: skip
    session.commit()
    return decision


def publish_decision(*, session: Session, actor: User, consultation: Consultation) -> Decision:
    """Publishes the recorded decision to the public archive (with the submissions their authors made public)."""
    decision = decision_of(session=session, consultation_id=consultation.id)
    _require(decision is not None, N_("Record the decision first."))
    _require(decision.published_at is None, N_("The decision is already published."))
    before = audit.snapshot(decision)
    decision.published_at = utcnow()
    session.add(decision)
    audit.record(session, actor=actor, action="decision.publish", entity=decision, before=before)
    changes.mark_shared(session)
    session.commit()
    return decision


# --- partners --------------------------------------------------------------------------------------------


def submit(
    *, session: Session, actor: User, consultation: Consultation, organisation_id: int, data: SubmissionCreate
) -> tuple[Submission, bool]:
    """An organisation's position, new or revised; (the submission, whether it is new)."""
    if not may_take_part(session=session, consultation=consultation, organisation_id=organisation_id):
        raise Forbidden(N_("Your organisation is not invited to this consultation."))
    _require_accepting(consultation)
    existing = session.exec(
        select(Submission)
        .where(Submission.consultation_id == consultation.id, Submission.organisation_id == organisation_id)
        .with_for_update()
    ).first()
    now = utcnow()
    if existing is None:
        submission = Submission(
            consultation_id=consultation.id, organisation_id=organisation_id, **data.model_dump(),
            submitted_at=now, updated_at=now, submitted_by_id=actor.id,
        )  # fmt: skip
        session.add(submission)
        audit.record(session, actor=actor, action="submission.create", entity=submission)
    else:
        submission = existing
        before = audit.snapshot(submission)
        for field, value in data.model_dump().items():
            setattr(submission, field, value)
        submission.updated_at = now
        submission.revision += 1
        submission.submitted_by_id = actor.id
        session.add(submission)
        audit.record(session, actor=actor, action="submission.revise", entity=submission, before=before)
    session.commit()
    return submission, existing is None


def _require_accepting(consultation: Consultation) -> None:
    now = utcnow()
    if consultation.status == ConsultationStatus.open and now < consultation.opens_at:
        raise WrongState(
            N_("The consultation opens for submissions on {when}."), when=consultation.opens_at.isoformat()
        )
    _require(accepting(consultation, now), N_("The consultation is closed: submissions are no longer accepted."))


PDF_MAGIC = b"%PDF-"


def attach(
    *, session: Session, actor: User, consultation: Consultation, submission: Submission, filename: str, data: bytes
) -> Submission:
    """Attaches a PDF to a submission (replacing an earlier one) while the consultation takes submissions."""
    _require_accepting(consultation)
    check_attachment(data)
    before = audit.snapshot(submission)
    submission.attachment_sha256 = archive.store(data, settings.effective_attachments_dir)
    submission.attachment_name = _safe_name(filename)
    submission.attachment_size = len(data)
    submission.updated_at = utcnow()
    session.add(submission)
    audit.record(session, actor=actor, action="submission.attach", entity=submission, before=before)
    session.commit()
    return submission


def check_attachment(data: bytes) -> None:
    """Refuses a file that is too large or not a readable PDF (a form checks it before saving anything)."""
    limit = int(settings.attachment_max_mb * 1024 * 1024)
    if len(data) > limit:
        raise Invalid(N_("The file is larger than {mb} MB."), field="file", mb=f"{settings.attachment_max_mb:g}")
    if not data.startswith(PDF_MAGIC) or not _readable_pdf(data):
        raise Invalid(N_("Only PDF files can be attached."), field="file")


def _readable_pdf(data: bytes) -> bool:
    try:
        return len(PdfReader(io.BytesIO(data)).pages) > 0
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError):
        return False


def _safe_name(filename: str) -> str:
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip() or "attachment.pdf"
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '"<>|:*?')[:200]
    return name if name.lower().endswith(".pdf") else f"{name[:196]}.pdf"


def attachment_bytes(submission: Submission) -> bytes:
    if submission.attachment_sha256 is None:
        raise NotFound(N_("This submission has no attachment."))
    return archive.load(submission.attachment_sha256, settings.effective_attachments_dir)


# --- the public archive ----------------------------------------------------------------------------------


def published_decisions(
    *, session: Session, q: str | None = None, emergency_id: int | None = None, year: int | None = None,
    limit: int = 50, offset: int = 0,
) -> tuple[list[tuple[Decision, Consultation]], int]:  # fmt: skip
    """Published decisions, the newest first, searched in their title, question and text."""
    query = (
        select(Decision, Consultation)
        .join(Consultation, Consultation.id == Decision.consultation_id)
        .where(col(Decision.published_at).is_not(None))
    )
    if q and q.strip():
        escaped = q.strip().casefold().replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
        query = query.where(col(Decision.search_text).like(f"%{escaped}%", escape="\\"))
    if emergency_id is not None:
        query = query.where(Consultation.emergency_id == emergency_id)
    if year is not None:
        query = query.where(
            col(Decision.decided_on) >= datetime(year, 1, 1).date(),
            col(Decision.decided_on) <= datetime(year, 12, 31).date(),
        )
    total = session.exec(select(sa.func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(Decision.decided_on).desc(), col(Decision.id).desc()).offset(offset).limit(limit)
    )
    return [(d, c) for d, c in rows], total


def public_submissions(*, session: Session, consultation_id: int) -> list[Submission]:
    """The submissions their organisations agreed to publish."""
    return list(
        session.exec(
            select(Submission)
            .where(Submission.consultation_id == consultation_id, col(Submission.public))
            .order_by(Submission.submitted_at, Submission.id)
        )
    )
