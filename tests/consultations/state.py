"""Consultations in any state a test needs, built through the service (the real rules), and what their tables
hold, read afresh (for tests that check a refused request changed nothing).

Each call works in its own short session, so no transaction stays open while the app serves the test's requests
(on SQLite the test's writer would hold the database's write lock against the app).
"""

from datetime import date, datetime, timedelta
from io import BytesIO
from typing import Any

from pypdf import PdfWriter
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, func, select

from service import audit
from service.audit import AuditEntry
from service.consultations import service
from service.consultations.models import (
    Consultation,
    ConsultationCreate,
    Decision,
    DecisionCreate,
    DecisionVote,
    Invitation,
    Submission,
    SubmissionCreate,
)
from service.db import utcnow, write_engine
from service.notifications.models import OutboxMessage
from service.users.models import User

# The states `Consultations.make` builds. `scheduled` is open before its opening time, `overdue` open after its
# closing time (the job has not run yet); `published` is decided with the decision published.
STATES = ("draft", "scheduled", "open", "overdue", "closed", "decided", "published")
API = "/api/v1/consultations"


def later(minutes: float = 60) -> datetime:
    return utcnow() + timedelta(minutes=minutes)


def iso(minutes: float = 60) -> str:
    """A time `minutes` from now as the API takes it (with its offset)."""
    return later(minutes).isoformat()


def consultation_body(invited_ids: list[int], **fields: Any) -> dict[str, Any]:
    """A valid `POST /api/v1/consultations` body, taking submissions from a minute ago for two hours."""
    return {
        "title": "План за възстановяване след наводнението",
        "question": "Подкрепяте ли предложените мерки за подпомагане на засегнатите домакинства?",
        "measures": "1. Еднократна помощ.\n2. Освобождаване от местни такси за 6 месеца.",
        "opens_at": iso(-1),
        "closes_at": iso(120),
        "invited_ids": invited_ids,
        **fields,
    }


def decision_body(votes: dict[int, str] | None = None, **fields: Any) -> dict[str, Any]:
    """A valid `POST .../decision` body with `votes` (organisation id → `for` / `against` / `abstain`)."""
    return {
        "text": "Общинският съвет приема мерките с изменението за срока.",
        "decided_on": date.today().isoformat(),
        "votes": [{"organisation_id": org, "vote": vote} for org, vote in (votes or {}).items()],
        **fields,
    }


class Consultations:
    """Consultations run by `actor` (a coordinator), returned as ids."""

    def __init__(self, engine: Engine, actor: User) -> None:
        self.engine = engine
        self.actor = actor

    def writer(self) -> Session:
        return Session(write_engine(self.engine), expire_on_commit=False)

    def reader(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def get(self, consultation_id: int) -> Consultation:
        with self.reader() as session:
            return service.get(session=session, consultation_id=consultation_id)

    def update(self, consultation_id: int, **columns: Any) -> None:
        """Sets columns directly: for moving a consultation's times, as time passing would."""
        with self.writer() as session:
            consultation = session.get(Consultation, consultation_id)
            for name, value in columns.items():
                setattr(consultation, name, value)
            session.add(consultation)
            session.commit()

    def make(
        self, state: str = "open", invited: list[int] = (), *, submissions: dict[int, User] | None = None,
        votes: dict[int, str] | None = None, **fields: Any,
    ) -> int:  # fmt: skip
        """A consultation in `state` inviting `invited`; `submissions` (organisation id → its partner user) are
        made while it is open, `votes` recorded with the decision where it has one."""
        if submissions and state in ("draft", "scheduled"):
            raise ValueError(f"a {state} consultation takes no submissions")
        body = consultation_body(list(invited), **fields)
        if state == "scheduled":
            body |= {"opens_at": iso(60), "closes_at": iso(180)}
        with self.writer() as session:
            consultation = service.create(
                session=session, actor=self.actor, data=ConsultationCreate.model_validate(body)
            )
            if state == "draft":
                return consultation.id
            service.open_consultation(session=session, actor=self.actor, consultation=consultation)
            for organisation_id, user in (submissions or {}).items():
                self._submit(session, consultation, organisation_id, user)
            if state == "overdue":
                consultation.closes_at = utcnow() - timedelta(seconds=1)
                session.add(consultation)
                session.commit()
            if state in ("closed", "decided", "published"):
                service.close(session=session, actor=self.actor, consultation=consultation)
            if state in ("decided", "published"):
                data = DecisionCreate.model_validate(decision_body(votes))
                service.record_decision(session=session, actor=self.actor, consultation=consultation, data=data)
            if state == "published":
                service.publish_decision(session=session, actor=self.actor, consultation=consultation)
            return consultation.id

    def submit(self, consultation_id: int, organisation_id: int, user: User, **fields: Any) -> int:
        """An organisation's submission, made (or revised) by `user` through the service; its id."""
        with self.writer() as session:
            consultation = service.get(session=session, consultation_id=consultation_id)
            return self._submit(session, consultation, organisation_id, user, **fields)

    def _submit(
        self, session: Session, consultation: Consultation, organisation_id: int, user: User, **fields: Any
    ) -> int:
        data = SubmissionCreate.model_validate(
            {"position": "support", "comments": f"Позицията на организация {organisation_id}.", **fields}
        )
        submission, _created = service.submit(
            session=session, actor=user, consultation=consultation, organisation_id=organisation_id, data=data
        )
        return submission.id

    def attach(self, consultation_id: int, submission_id: int, user: User, data: bytes, filename: str) -> str:
        """Attaches `data` to a submission as `user` through the service; the stored file's SHA-256."""
        with self.writer() as session:
            submission = service.attach(
                session=session, actor=user, consultation=service.get(session=session, consultation_id=consultation_id),
                submission=service.get_submission(
                    session=session, consultation_id=consultation_id, submission_id=submission_id
                ),
                filename=filename, data=data,
            )  # fmt: skip
            return submission.attachment_sha256


def pdf_bytes(pages: int = 1, title: str = "Становище") -> bytes:
    """A real PDF of `pages` blank pages, its title in the metadata (so two titles make two files)."""
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    writer.add_metadata({"/Title": title})
    buffer = BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


TABLES: tuple[type[SQLModel], ...] = (Consultation, Invitation, Submission, Decision, DecisionVote, OutboxMessage)


def _key(row: SQLModel) -> Any:
    if isinstance(row, Invitation):
        return (row.consultation_id, row.organisation_id)
    if isinstance(row, DecisionVote):
        return (row.decision_id, row.organisation_id)
    return row.id


def consultations_state(engine: Engine) -> dict[str, Any]:
    """Every consultation, invitation, submission, decision, vote and queued e-mail as stored, and the audit
    log's length and head."""
    with Session(engine) as session:
        return {
            table.__name__: {_key(row): row.model_dump(mode="json") for row in session.exec(select(table))}
            for table in TABLES
        } | {
            "audit_rows": session.exec(select(func.count()).select_from(AuditEntry)).one(),
            "audit_head": session.exec(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)).first(),
        }


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two `consultations_state`s, one line per row or count (empty when nothing did)."""
    found = []
    for key in before:
        if isinstance(before[key], dict):
            for row_key in sorted(before[key].keys() | after[key].keys(), key=str):
                if before[key].get(row_key) != after[key].get(row_key):
                    found.append(f"{key} {row_key}: {before[key].get(row_key)} -> {after[key].get(row_key)}")
        elif before[key] != after[key]:
            found.append(f"{key}: {before[key]} -> {after[key]}")
    return found


def audit_entries(engine: Engine, *prefixes: str) -> list[AuditEntry]:
    """The audit log in chain order; only the actions starting with one of `prefixes` when given."""
    with Session(engine) as session:
        entries = list(session.exec(select(AuditEntry).order_by(AuditEntry.id)))
    return [e for e in entries if not prefixes or e.action.startswith(prefixes)]


def chain_holds(engine: Engine) -> bool:
    """Whether the whole audit chain verifies, every row of it."""
    with Session(engine) as session:
        checked, broken = audit.verify_chain(session)
        total = session.exec(select(func.count()).select_from(AuditEntry)).one()
    return broken is None and checked == total
