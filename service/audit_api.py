"""The audit log for administrators: `GET /api/v1/audit`."""

from typing import Annotated

from fastapi import APIRouter, Query

from service import audit
from service.auth import AdminUser
from service.db import Id, SessionDep
from service.errors import API_ERRORS
from service.pagination import PageDep

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], responses=API_ERRORS)


@router.get("", response_model=list[audit.AuditEntryPublic])
def list_audit(
    admin: AdminUser,
    session: SessionDep,
    page: PageDep,
    entity: Annotated[str | None, Query(max_length=100)] = None,
    entity_id: Id | None = None,
    actor_id: Id | None = None,
) -> list[audit.AuditEntryPublic]:
    """Every change, newest first: who, when, what, before and after, and each row's chain hash."""
    rows = audit.list_entries(
        session=session, entity=entity, entity_id=entity_id, actor_id=actor_id, limit=page.limit, offset=page.offset
    )
    return [audit.AuditEntryPublic.of(row) for row in rows]
