"""The append-only audit log: every change, chained row to row by SHA-256 so tampering shows.

Service functions call `record()`; the entries are sealed as the session commits, in the same
transaction: the chain's head is locked, the entries are hashed onto it in order and inserted. On SQLite
the app does it (its writer holds the database's write lock from BEGIN). On PostgreSQL the app inserts
them into `audit_pending` and a deferred trigger seals them as the transaction commits (migration 0006):
the chain's lock, which every writing transaction takes in turn, is then held inside the database only,
never while a thread of the app waits for its turn to send COMMIT.
"""

import hashlib
import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlmodel import Field, Session, SQLModel, select

from service.db import UTCDateTime, utcnow

GENESIS = "0" * 64
_PENDING = "accord_audit_pending"


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime, index=True)
    actor_id: int | None = Field(default=None, index=True)
    actor: str = Field(max_length=300)
    action: str = Field(max_length=100, index=True)
    entity: str = Field(max_length=100)
    entity_id: int | None = Field(default=None)
    before: str | None = Field(default=None, sa_type=sa.Text)
    after: str | None = Field(default=None, sa_type=sa.Text)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class PendingAuditEntry(SQLModel, table=True):
    """An entry on its way into the chain (PostgreSQL): inserted with the change, moved into `audit_entry`
    with its hash by the trigger as the transaction commits, so no other transaction ever sees it here."""

    __tablename__ = "audit_pending"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime)
    actor_id: int | None = None
    actor: str = Field(max_length=300)
    action: str = Field(max_length=100)
    entity: str = Field(max_length=100)
    entity_id: int | None = None
    before: str | None = Field(default=None, sa_type=sa.Text)
    after: str | None = Field(default=None, sa_type=sa.Text)
    unsealed: str = Field(sa_type=sa.Text)  # its canonical JSON up to the predecessor's hash


class AuditEntryPublic(SQLModel):
    id: int
    at: datetime
    actor_id: int | None
    actor: str
    action: str
    entity: str
    entity_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    hash: str

    @classmethod
    def of(cls, entry: AuditEntry) -> "AuditEntryPublic":
        return cls(
            **entry.model_dump(exclude={"before", "after", "prev_hash"}),
            before=json.loads(entry.before) if entry.before else None,
            after=json.loads(entry.after) if entry.after else None,
        )


def snapshot(obj: Any) -> dict[str, Any]:
    """The audited state of a row: its own `audit_snapshot()` if it has one, else its columns."""
    if hasattr(obj, "audit_snapshot"):
        return obj.audit_snapshot()
    return obj.model_dump(mode="json")


def record(
    session: Session,
    *,
    actor: Any,
    action: str,
    entity: Any = None,
    entity_name: str | None = None,
    entity_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Queues an audit entry; `entity`'s state after the change is taken when the session commits."""
    session.info.setdefault(_PENDING, []).append(
        {
            "actor": actor,
            "action": action,
            "entity": entity,
            "entity_name": entity_name or (entity.__tablename__ if entity is not None else "system"),
            "entity_id": entity_id,
            "before": before,
            "after": after,
            "at": utcnow(),
        }
    )


def _actor_fields(actor: Any) -> tuple[int | None, str]:
    if actor is None:
        return None, "system"
    if isinstance(actor, str):
        return None, actor
    return actor.id, actor.email


def _unsealed(row: dict[str, Any]) -> str:
    """An entry's canonical JSON up to its predecessor's hash, which sorts last: '{...,"prev":"'."""
    content = {
        "at": row["at"].isoformat(timespec="microseconds"),
        "actor_id": row["actor_id"],
        "actor": row["actor"],
        "action": row["action"],
        "entity": row["entity"],
        "entity_id": row["entity_id"],
        "before": row["before"],
        "after": row["after"],
    }
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return canonical[:-1] + ',"prev":"'


def _chained(unsealed: str, prev_hash: str) -> str:
    """The SHA-256 of the entry's canonical JSON with its predecessor's hash (as the trigger accord_audit_seal does)."""
    return hashlib.sha256(f'{unsealed}{prev_hash}"}}'.encode()).hexdigest()


def entry_hash(entry: AuditEntry) -> str:
    """The SHA-256 of an entry's content and its predecessor's hash."""
    return _chained(_unsealed({name: getattr(entry, name) for name in _HASHED}), entry.prev_hash)


_HASHED = ("at", "actor_id", "actor", "action", "entity", "entity_id", "before", "after")


def _dump(value: dict[str, Any] | None) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


_TABLE = AuditEntry.__table__
# Core statements, built once: every write in the service passes through here.
_HEAD = sa.select(_TABLE.c.hash).order_by(_TABLE.c.id.desc()).limit(1)
_INSERT = sa.insert(_TABLE)
_PENDING_INSERT = sa.insert(PendingAuditEntry.__table__)
PENDING_COLUMNS = ("at", "actor_id", "actor", "action", "entity", "entity_id", "before", "after", "unsealed")


def entry_row(
    *, at: datetime, actor_id: int, actor: str, action: str, entity: Any, after: dict[str, Any]
) -> dict[str, Any]:
    """The entry of a change to `entity` (a row), whose state after it is `after`, for a writer that stores
    it itself (a partner's pledge: service.emergencies.intake) with `pending_row` or `append_sealed`."""
    return {
        "at": at,
        "actor_id": actor_id,
        "actor": actor,
        "action": action,
        "entity": entity.__tablename__,
        "entity_id": entity.id,
        "before": None,
        "after": _dump(after),
    }


def pending_row(row: dict[str, Any]) -> dict[str, Any]:
    """PostgreSQL: an entry as `audit_pending` takes it (PENDING_COLUMNS), for the trigger to seal."""
    return {**row, "unsealed": _unsealed(row)}


def append_sealed(execute: Any, rows: list[dict[str, Any]]) -> None:
    """SQLite: the entries hashed onto the chain's head and inserted in order, by `execute` (a session's or
    a connection's) inside a writing transaction, which holds the database already."""
    prev = execute(_HEAD).scalar() or GENESIS
    for row in rows:
        row["prev_hash"] = prev
        row["hash"] = prev = _chained(_unsealed(row), prev)
        execute(_INSERT, row)  # one row a statement: ids follow the chain's order


def _entry_row(item: dict[str, Any]) -> dict[str, Any]:
    entity = item["entity"]
    after = item["after"]
    if after is None and entity is not None and not sa.inspect(entity).was_deleted:
        after = snapshot(entity)
    actor_id, actor = _actor_fields(item["actor"])
    return {
        "at": item["at"],
        "actor_id": actor_id,
        "actor": actor,
        "action": item["action"],
        "entity": item["entity_name"],
        "entity_id": item["entity_id"] or (getattr(entity, "id", None) if entity is not None else None),
        "before": _dump(item["before"]),
        "after": _dump(after),
    }


@event.listens_for(Session, "before_commit")
def _seal(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    session.flush()  # new rows get their ids
    rows = [_entry_row(item) for item in pending]
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_PENDING_INSERT, [pending_row(row) for row in rows])
    else:
        append_sealed(session.execute, rows)


# Whether PostgreSQL's trigger that seals the entries is there and fires ('O': on, 'A': always).
_SEALING = sa.text(
    "SELECT tgenabled FROM pg_trigger WHERE tgname = 'audit_pending_seal' AND tgrelid = to_regclass('audit_pending')"
)
_UNSEALED = sa.select(sa.func.count()).select_from(PendingAuditEntry.__table__)


def sealing_problem(conn: sa.Connection) -> str | None:
    """Why this database would not seal the app's audit entries (PostgreSQL's trigger missing or disabled,
    say by hand or by a partial restore), or None. Without the trigger they would wait unseen forever."""
    if conn.dialect.name != "postgresql":
        return None
    enabled = conn.execute(_SEALING).scalar()
    if enabled in ("O", "A"):
        return None
    state = "is missing" if enabled is None else "is disabled"
    return f"the trigger audit_pending_seal, which seals the audit log as each change commits (migration 0006), {state}"


def unsealed_entries(session: Session) -> int:
    """Entries that were never sealed: none but inside a committing transaction, unless the trigger was off."""
    return session.execute(_UNSEALED).scalar_one()


@event.listens_for(Session, "after_rollback")
def _discard(session: Session) -> None:
    session.info.pop(_PENDING, None)


def verify_chain(session: Session) -> tuple[int, AuditEntry | None]:
    """Walks the chain in order: (rows checked, the first row that does not fit, or None)."""
    prev = GENESIS
    checked = 0
    rows = session.exec(select(AuditEntry).order_by(AuditEntry.id).execution_options(yield_per=1000))
    for entry in rows:
        if entry.prev_hash != prev or entry_hash(entry) != entry.hash:
            return checked, entry
        prev = entry.hash
        checked += 1
    return checked, None


def _filtered(query: Any, entity: str | None, entity_id: int | None, actor_id: int | None = None) -> Any:
    if entity:
        query = query.where(AuditEntry.entity == entity)
    if entity_id is not None:
        query = query.where(AuditEntry.entity_id == entity_id)
    if actor_id is not None:
        query = query.where(AuditEntry.actor_id == actor_id)
    return query


def iter_entries(*, session: Session, entity: str | None = None, entity_id: int | None = None) -> Any:
    """Every entry in chain order, streamed (for the export)."""
    query = _filtered(select(AuditEntry), entity, entity_id).order_by(AuditEntry.id)
    return session.exec(query.execution_options(yield_per=1000))


def list_entries(
    session: Session,
    *,
    entity: str | None = None,
    entity_id: int | None = None,
    actor_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[AuditEntry]:
    """The newest entries first, filtered."""
    query = _filtered(select(AuditEntry), entity, entity_id, actor_id)
    return list(session.exec(query.order_by(AuditEntry.id.desc()).offset(offset).limit(limit)))
