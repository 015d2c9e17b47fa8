"""Builds a consultation all the way to a (published) decision, through the service functions.

`decided(session, ...)` invites one partner organisation per `Stakeholder`, opens the consultation, takes
each stakeholder's submission (public or not, with a PDF attached if asked), closes it, records the
decision with the stakeholders' votes and, unless `publish=False`, publishes it. Every comment carries a
number unique to the build, so a test can look for (or make sure it does not find) one stakeholder's text.

PDF attachments are stored under `settings.effective_attachments_dir`: a test that attaches points
`settings.attachments_dir` at a temporary folder first.
"""

import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from pypdf import PdfWriter
from sqlmodel import Session

from service.consultations import service
from service.consultations.models import (
    Consultation,
    ConsultationCreate,
    Decision,
    DecisionCreate,
    Position,
    Submission,
    SubmissionCreate,
    Vote,
    VoteIn,
)
from service.db import utcnow
from service.emergencies import service as emergencies
from service.emergencies.models import Emergency, EmergencyCreate
from service.partners.models import Organisation
from service.users.models import User
from tests.factories import make_partner, make_user

_builds = itertools.count(1)


@dataclass(frozen=True)
class Stakeholder:
    """An invited organisation: what it submits (nothing when `position` is None) and how it votes."""

    position: Position | None = Position.support
    public: bool = True
    vote: Vote | None = Vote.for_
    attachment: bool = False
    name_en: str | None = None


# The default cast: every combination a public archive has to get right.
STAKEHOLDERS = (
    Stakeholder(Position.support, public=True, vote=Vote.for_, attachment=True, name_en="Red Cross Test"),
    Stakeholder(Position.oppose, public=False, vote=Vote.against, attachment=True),
    Stakeholder(Position.amend, public=True, vote=Vote.abstain),
    Stakeholder(None, vote=Vote.for_),  # voted without submitting
    Stakeholder(Position.support, public=False, vote=None),  # submitted privately, did not vote
)


@dataclass
class Built:
    consultation: Consultation
    decision: Decision
    coordinator: User
    organisations: list[Organisation]  # one per stakeholder, in the given order
    submissions: dict[int, Submission] = field(default_factory=dict)  # by organisation id
    votes: dict[int, Vote] = field(default_factory=dict)  # by organisation id

    def public_comments(self) -> list[str]:
        return [s.comments for s in self.submissions.values() if s.public]

    def private_comments(self) -> list[str]:
        return [s.comments for s in self.submissions.values() if not s.public]


def tiny_pdf() -> bytes:
    """A real one-page PDF (pypdf reads it back)."""
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_emergency(session: Session, actor: User, title: str = "Наводнение в Перник") -> Emergency:
    return emergencies.declare(
        session=session, actor=actor,
        data=EmergencyCreate(title=title, kind="flood", area="Перник", severity="severe"),
    )  # fmt: skip


def decided(
    session: Session,
    *,
    title: str = "Мерки за подкрепа на малкия бизнес",
    question: str = "Подкрепяте ли временното освобождаване от местни такси?",
    text: str = "Общинският съвет **приема** мерките с поправките на сдруженията.",
    decided_on: date | None = None,
    emergency: Emergency | None = None,
    stakeholders: Sequence[Stakeholder] = STAKEHOLDERS,
    publish: bool = True,
    coordinator: User | None = None,
) -> Built:
    """A consultation with its decision recorded (and published unless `publish=False`)."""
    n = next(_builds)
    coordinator = coordinator or make_user(session, "coordinator")
    organisations = [make_partner(session, **({"name_en": s.name_en} if s.name_en else {})) for s in stakeholders]
    now = utcnow()
    consultation = service.create(
        session=session, actor=coordinator,
        data=ConsultationCreate(
            title=title, question=question, measures="1. Освобождаване от такса смет.\n2. Отсрочка на наеми.",
            emergency_id=emergency.id if emergency else None, opens_at=now - timedelta(minutes=1),
            closes_at=now + timedelta(days=1), invited_ids=[o.id for o in organisations],
        ),
    )  # fmt: skip
    service.open_consultation(session=session, actor=coordinator, consultation=consultation)
    submissions: dict[int, Submission] = {}
    for index, (stakeholder, organisation) in enumerate(zip(stakeholders, organisations, strict=True)):
        if stakeholder.position is None:
            continue
        author = make_user(session, "partner", organisation=organisation)
        kind = "Публично" if stakeholder.public else "Непубликувано"
        comments = f"{kind} становище {n}-{index}: Предлагаме срокът да е 90 дни."
        submission, _new = service.submit(
            session=session, actor=author, consultation=consultation, organisation_id=organisation.id,
            data=SubmissionCreate(position=stakeholder.position, comments=comments, public=stakeholder.public),
        )  # fmt: skip
        if stakeholder.attachment:
            submission = service.attach(
                session=session, actor=author, consultation=consultation, submission=submission,
                filename=f"становище-{n}-{index}.pdf", data=tiny_pdf(),
            )  # fmt: skip
        submissions[organisation.id] = submission
    service.close(session=session, actor=coordinator, consultation=consultation)
    votes = [
        VoteIn(organisation_id=o.id, vote=s.vote) for s, o in zip(stakeholders, organisations, strict=True) if s.vote
    ]
    decision = service.record_decision(
        session=session, actor=coordinator, consultation=consultation,
        data=DecisionCreate(text=text, decided_on=decided_on or now.date(), votes=votes),
    )  # fmt: skip
    if publish:
        decision = service.publish_decision(session=session, actor=coordinator, consultation=consultation)
    return Built(
        consultation=consultation, decision=decision, coordinator=coordinator, organisations=organisations,
        submissions=submissions, votes={v.organisation_id: v.vote for v in votes},
    )  # fmt: skip
