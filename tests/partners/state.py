"""What the partner registry holds, read afresh: for tests that check a refused request changed nothing."""

from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from service.audit import AuditEntry
from service.partners.models import Contact, Organisation
from service.users.models import User


def registry_state(engine: Engine) -> dict[str, Any]:
    """Every organisation, contact and account as stored, and the audit log's length and head.

    Read in its own short session, so the test's session keeps no transaction open (on SQLite a
    writer's transaction would hold the database's write lock against the app).
    """
    with Session(engine) as session:
        return {
            "organisations": {o.id: o.audit_snapshot() for o in session.exec(select(Organisation))},
            "contacts": {c.id: c.model_dump() for c in session.exec(select(Contact))},
            "users": {u.id: _account(u) for u in session.exec(select(User))},
            "audit_rows": session.exec(select(func.count()).select_from(AuditEntry)).one(),
            "audit_head": session.exec(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)).first(),
        }


def _account(user: User) -> dict[str, Any]:
    return {
        **user.model_dump(include={"email", "full_name", "organisation_id", "language", "is_active", "locked_until"}),
        "roles": sorted(str(role) for role in user.roles),
        "password_hash": user.password_hash,
    }


def organisation_state(state: dict[str, Any], organisation_id: int) -> dict[str, Any]:
    """One organisation's part of a `registry_state`: its row, its contacts and its logins."""
    return {
        "organisation": state["organisations"].get(organisation_id),
        "contacts": {k: c for k, c in state["contacts"].items() if c["organisation_id"] == organisation_id},
        "users": {k: u for k, u in state["users"].items() if u["organisation_id"] == organisation_id},
    }
