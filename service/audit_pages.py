"""The audit log for administrators: `/staff/audit`, its CSV export and the chain's state."""

import csv
import io
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse

from service import audit
from service.auth import AdminUser, check_csrf
from service.db import Id, SessionDep
from service.pagination import PageDep
from service.web import csv_download, render

router = APIRouter(dependencies=[Depends(check_csrf)], include_in_schema=False)

Entity = Annotated[str | None, Query(max_length=100)]


@router.get("/staff/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    admin: AdminUser,
    session: SessionDep,
    page: PageDep,
    entity: Entity = None,
    entity_id: Id | None = None,
) -> Response:
    entries = audit.list_entries(
        session=session, entity=entity or None, entity_id=entity_id, limit=page.limit, offset=page.offset
    )
    # Walking the whole chain costs a read of every row: only when asked.
    checked, tampered = audit.verify_chain(session) if "verify" in request.query_params else (None, None)
    return render(
        request,
        "staff/audit.html",
        {"entries": [audit.AuditEntryPublic.of(e) for e in entries], "page": page, "entity": entity or "",
         "entity_id": entity_id, "checked": checked, "tampered": tampered},
    )  # fmt: skip


@router.get("/staff/audit/export.csv")
def audit_csv(admin: AdminUser, session: SessionDep, entity: Entity = None, entity_id: Id | None = None) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["id", "at", "actor_id", "actor", "action", "entity", "entity_id", "before", "after", "prev_hash", "hash"]
    )
    for entry in audit.iter_entries(session=session, entity=entity or None, entity_id=entity_id):
        writer.writerow(
            [entry.id, entry.at.isoformat(), entry.actor_id, entry.actor, entry.action, entry.entity, entry.entity_id,
             entry.before or "", entry.after or "", entry.prev_hash, entry.hash]
        )  # fmt: skip
    return csv_download("\ufeff" + out.getvalue(), "audit.csv")
