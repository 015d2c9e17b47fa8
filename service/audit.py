"""The append-only audit log: every change, chained row to row by SHA-256 so tampering shows.

Service functions call `record()`; the rows are sealed when the session commits: the chain's head is
locked (an advisory lock on PostgreSQL; SQLite's write lock, which every writing transaction takes at
BEGIN), the pending entries are hashed onto it in order and inserted in the same transaction.
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
_CHAIN_LOCK_KEY = 0x4143434F5244  # "ACCORD": the advisory lock that serialises the chain's head


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


def _content_hash(row: dict[str, Any]) -> str:
    content = {
        "prev": row["prev_hash"],
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
    return hashlib.sha256(canonical.encode()).hexdigest()


def entry_hash(entry: AuditEntry) -> str:
    """The SHA-256 of an entry's content and its predecessor's hash."""
    return _content_hash({name: getattr(entry, name) for name in _HASHED})


_HASHED = ("prev_hash", "at", "actor_id", "actor", "action", "entity", "entity_id", "before", "after")


def _dump(value: dict[str, Any] | None) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


_TABLE = AuditEntry.__table__
# Core statements, built once: every write in the service passes through here.
_HEAD = sa.select(_TABLE.c.hash).order_by(_TABLE.c.id.desc()).limit(1)
_INSERT = sa.insert(_TABLE)
_CHAIN_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)")


def _lock_head(session: Session) -> str:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_CHAIN_LOCK, {"key": _CHAIN_LOCK_KEY})
    return session.execute(_HEAD).scalar() or GENESIS


@event.listens_for(Session, "before_commit")
def _seal(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    session.flush()  # new rows get their ids
    prev = _lock_head(session)
    for item in pending:
        entity = item["entity"]
        after = item["after"]
        if after is None and entity is not None and not sa.inspect(entity).was_deleted:
            after = snapshot(entity)
        actor_id, actor = _actor_fields(item["actor"])
        row = {
            "at": item["at"],
            "actor_id": actor_id,
            "actor": actor,
            "action": item["action"],
            "entity": item["entity_name"],
            "entity_id": item["entity_id"] or (getattr(entity, "id", None) if entity is not None else None),
            "before": _dump(item["before"]),
            "after": _dump(after),
            "prev_hash": prev,
        }
        row["hash"] = prev = _content_hash(row)
        session.execute(_INSERT, row)  # one row a statement: ids follow the chain's order


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
