"""Public updates and rumours in any state a test needs, built through the service layer, and what their
tables hold, read afresh (for tests that check a refused request changed nothing).

Each call works in its own short session, so no transaction stays open while the app serves the test's
requests (on SQLite the test's writer would hold the database's write lock against the app).
"""

from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, func, select

from service.audit import AuditEntry
from service.bulletins import service
from service.bulletins.models import (
    Bulletin,
    BulletinCreate,
    BulletinRevision,
    CorrectionCreate,
    Rumour,
    RumourCreate,
    RumourUpdate,
    VerdictBody,
)
from service.db import utcnow, write_engine
from service.users.models import User

T = TypeVar("T", bound=SQLModel)

# Every state `Newsroom.bulletin` builds; `corrected` is published with a second revision.
BULLETIN_STATES = ("draft", "in_review", "scheduled", "published", "corrected", "retracted")
RUMOUR_STATES = ("new", "investigating", "resolved")


def later(seconds: float = 3600) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


def iso(seconds: float = 3600) -> str:
    """A time `seconds` from now as the API takes it (with its offset)."""
    return later(seconds).isoformat()


def bulletin_body(**fields: Any) -> dict[str, Any]:
    """A valid `POST /api/v1/bulletins` body."""
    return {
        "title": "Спиране на водата в кв. „Изток“",
        "body": "Поради авария водата е спряна до **18:00 ч.** Цистерна има пред читалището.",
        "area_desc": "Перник, кв. „Изток“",
        **fields,
    }


def rumour_body(**fields: Any) -> dict[str, Any]:
    """A valid `POST /api/v1/rumours` body."""
    return {
        "wording": "Водата от чешмите е отровена, не пийте!",
        "summary": "Твърдение, че водопроводната вода е отровена",
        "channel": "Facebook група „Перник днес“",
        "url": "https://example.test/posts/42",
        "report_count": 3,
        "risk": "high",
        **fields,
    }


VERDICT = {
    "verdict": "false",
    "evidence": "Пробите на РЗИ от днес са в норма.",
    "response": "Водата е годна за пиене: пробите на РЗИ от днес са в норма.",
}


class Newsroom:
    """Public updates written by `author` and reviewed by `reviewer` (two communications officers), and
    rumours logged by the author; each returned by id."""

    def __init__(self, engine: Engine, author: User, reviewer: User) -> None:
        self.engine = engine
        self.author = author
        self.reviewer = reviewer

    def session(self) -> Session:
        return Session(write_engine(self.engine), expire_on_commit=False)

    def get(self, table: type[T], row_id: int) -> T | None:
        """The row as stored now, read in a session of its own."""
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(table, row_id)

    def bulletin(self, state: str = "draft", *, publish_at: datetime | None = None, **fields: Any) -> int:
        """An update in `state`; a scheduled one is due at `publish_at` (an hour from now by default)."""
        if state not in BULLETIN_STATES:
            raise ValueError(f"No such state {state!r}; one of {BULLETIN_STATES}.")
        with self.session() as s:
            b = service.create(session=s, actor=self.author, data=BulletinCreate(**bulletin_body(**fields)))
            if state == "draft":
                return b.id
            service.submit(session=s, actor=self.author, bulletin=b)
            if state == "scheduled":
                service.approve(session=s, actor=self.reviewer, bulletin=b, publish_at=publish_at or later())
            elif state != "in_review":
                service.approve(session=s, actor=self.reviewer, bulletin=b)
            if state == "corrected":
                correction = CorrectionCreate(body=b.body + "\n\nПоправка: до 20:00 ч.", reason="Удължен срок")
                service.correct(session=s, actor=self.author, bulletin=b, data=correction)
            if state == "retracted":
                service.retract(session=s, actor=self.reviewer, bulletin=b, reason="Авария е отстранена")
            return b.id

    def rumour(self, state: str = "new", **fields: Any) -> int:
        """A rumour in `state`: `resolved` has the standard false verdict (no answering update yet)."""
        if state not in RUMOUR_STATES:
            raise ValueError(f"No such state {state!r}; one of {RUMOUR_STATES}.")
        with self.session() as s:
            rumour = service.log_rumour(session=s, actor=self.author, data=RumourCreate(**rumour_body(**fields)))
            if state in ("investigating", "resolved"):
                service.update_rumour(
                    session=s, actor=self.author, rumour=rumour, data=RumourUpdate(status="investigating")
                )
            if state == "resolved":
                service.record_verdict(session=s, actor=self.author, rumour=rumour, data=VerdictBody(**VERDICT))
            return rumour.id

    def fact_check(self, rumour_id: int, area_desc: str = "Община Перник") -> int:
        """The draft update answering a resolved rumour."""
        with self.session() as s:
            rumour = s.get(Rumour, rumour_id)
            return service.draft_fact_check(session=s, actor=self.author, rumour=rumour, area_desc=area_desc).id


def public_state(engine: Engine) -> dict[str, Any]:
    """Every update, revision and rumour as stored, and the audit log's length and head."""
    with Session(engine) as session:
        return {
            table.__name__: {row.id: row.model_dump(mode="json") for row in session.exec(select(table))}
            for table in (Bulletin, BulletinRevision, Rumour)
        } | {
            "audit_rows": session.exec(select(func.count()).select_from(AuditEntry)).one(),
            "audit_head": session.exec(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)).first(),
        }


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two `public_state`s, one line per row or count (empty when nothing did)."""
    found = []
    for key in before:
        if isinstance(before[key], dict):
            for row_id in sorted(before[key].keys() | after[key].keys()):
                if before[key].get(row_id) != after[key].get(row_id):
                    found.append(f"{key} {row_id}: {before[key].get(row_id)} -> {after[key].get(row_id)}")
        elif before[key] != after[key]:
            found.append(f"{key}: {before[key]} -> {after[key]}")
    return found


def audit_actions(engine: Engine, entity_id: int | None = None, entity: str = "bulletin") -> list[str]:
    """The audit log's actions on one bulletin (or rumour, or all of a kind), oldest first."""
    with Session(engine) as session:
        query = select(AuditEntry.action).where(AuditEntry.entity == entity)
        if entity_id is not None:
            query = query.where(AuditEntry.entity_id == entity_id)
        return list(session.exec(query.order_by(AuditEntry.id)))
