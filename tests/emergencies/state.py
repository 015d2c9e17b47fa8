"""What the logistics tables hold, read afresh: for tests that check a refused request changed nothing."""

from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from service.audit import AuditEntry
from service.emergencies.models import Emergency, Need, Offer, Pledge, Receipt
from service.notifications.models import OutboxMessage


def logistics_state(engine: Engine) -> dict[str, Any]:
    """Every emergency, need, pledge, receipt, offer and queued e-mail as stored, and the audit log's length
    and head.

    Read in its own short session, so the test's session keeps no transaction open (on SQLite a writer's
    transaction would hold the database's write lock against the app).
    """
    with Session(engine) as session:
        return {
            table.__name__: {row.id: row.model_dump(mode="json") for row in session.exec(select(table))}
            for table in (Emergency, Need, Pledge, Receipt, Offer, OutboxMessage)
        } | {
            "audit_rows": session.exec(select(func.count()).select_from(AuditEntry)).one(),
            "audit_head": session.exec(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)).first(),
        }


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two `logistics_state`s, one line per row or count (empty when nothing did)."""
    found = []
    for key in before:
        if isinstance(before[key], dict):
            for row_id in sorted(before[key].keys() | after[key].keys()):
                if before[key].get(row_id) != after[key].get(row_id):
                    found.append(f"{key} {row_id}: {before[key].get(row_id)} -> {after[key].get(row_id)}")
        elif before[key] != after[key]:
            found.append(f"{key}: {before[key]} -> {after[key]}")
    return found
