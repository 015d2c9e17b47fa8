"""JSON routes of public updates and the rumour log (`/api/v1/bulletins`, `/api/v1/rumours`).

Only communications officers (and admins) read or write here; the public reads `/api/v1/public/updates`.
"""

from fastapi import APIRouter, Response, status

from service.auth import CommunicationsUser
from service.bulletins import service
from service.bulletins.models import (
    ApproveBody,
    Bulletin,
    BulletinCreate,
    BulletinPublic,
    BulletinStatus,
    BulletinUpdate,
    CorrectionCreate,
    RetractBody,
    ReviewReturn,
    RevisionPublic,
    Rumour,
    RumourCreate,
    RumourPublic,
    RumourStatus,
    RumourUpdate,
    VerdictBody,
)
from service.config import settings
from service.db import Id, SessionDep
from service.errors import API_ERRORS
from service.limits import ListWindow
from service.pagination import Page, PageDep

router = APIRouter(prefix="/api/v1", tags=["public updates"], responses=API_ERRORS)


# --- bulletins -------------------------------------------------------------------------------------------


@router.get("/bulletins", response_model=Page[BulletinPublic])
def list_bulletins(
    user: CommunicationsUser, session: SessionDep, page: PageDep, status: BulletinStatus | None = None,
    emergency_id: Id | None = None, language: str | None = None,
) -> Page:  # fmt: skip
    """Public updates in every state, the most recently changed first."""
    items, total = service.list_bulletins(
        session=session, status=status, emergency_id=emergency_id, language=language, limit=page.limit,
        offset=page.offset,
    )  # fmt: skip
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post("/bulletins", status_code=status.HTTP_201_CREATED, response_model=BulletinPublic)
def create_bulletin(data: BulletinCreate, user: CommunicationsUser, session: SessionDep) -> Bulletin:
    """Write a draft update."""
    return service.create(session=session, actor=user, data=data)


@router.get("/bulletins/{bulletin_id}", response_model=BulletinPublic)
def get_bulletin(bulletin_id: Id, user: CommunicationsUser, session: SessionDep) -> Bulletin:
    return service.get(session=session, bulletin_id=bulletin_id)


@router.patch("/bulletins/{bulletin_id}", response_model=BulletinPublic)
def update_bulletin(bulletin_id: Id, data: BulletinUpdate, user: CommunicationsUser, session: SessionDep) -> Bulletin:
    """Change a draft."""
    bulletin = service.get(session=session, bulletin_id=bulletin_id)
    return service.update(session=session, actor=user, bulletin=bulletin, data=data)


@router.delete("/bulletins/{bulletin_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_bulletin(bulletin_id: Id, user: CommunicationsUser, session: SessionDep) -> Response:
    """Delete a draft."""
    service.discard(session=session, actor=user, bulletin=service.get(session=session, bulletin_id=bulletin_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/bulletins/{bulletin_id}/submit", response_model=BulletinPublic)
def submit_bulletin(bulletin_id: Id, user: CommunicationsUser, session: SessionDep) -> Bulletin:
    """Send a draft for review by another communications officer."""
    bulletin = service.get(session=session, bulletin_id=bulletin_id)
    return service.submit(session=session, actor=user, bulletin=bulletin)


@router.post("/bulletins/{bulletin_id}/approve", response_model=BulletinPublic)
def approve_bulletin(
    bulletin_id: Id, user: CommunicationsUser, session: SessionDep, data: ApproveBody | None = None
) -> Bulletin:
    """Approve an update in review (never your own): published now, or at `publish_at`."""
    bulletin = service.get(session=session, bulletin_id=bulletin_id)
    return service.approve(session=session, actor=user, bulletin=bulletin, publish_at=data.publish_at if data else None)


@router.post("/bulletins/{bulletin_id}/send-back", response_model=BulletinPublic)
def send_back_bulletin(bulletin_id: Id, data: ReviewReturn, user: CommunicationsUser, session: SessionDep) -> Bulletin:
    """Return an update in review (or scheduled) to its author as a draft, saying why."""
    bulletin = service.get(session=session, bulletin_id=bulletin_id)
    return service.send_back(session=session, actor=user, bulletin=bulletin, reason=data.reason)


@router.post("/bulletins/{bulletin_id}/corrections", status_code=status.HTTP_201_CREATED, response_model=BulletinPublic)
def correct_bulletin(
    bulletin_id: Id, data: CorrectionCreate, user: CommunicationsUser, session: SessionDep
) -> Bulletin:
    """Correct a published update: a new revision with its reason (the CAP feed emits an Update)."""
    bulletin = service.get(session=session, bulletin_id=bulletin_id)
    return service.correct(session=session, actor=user, bulletin=bulletin, data=data)


@router.get("/bulletins/{bulletin_id}/revisions", response_model=list[RevisionPublic])
def bulletin_revisions(bulletin_id: Id, user: CommunicationsUser, session: SessionDep, window: ListWindow) -> list:
    """What the public saw: revision 1 (the publication) and each correction (`limit` of them, 500 at most)."""
    service.get(session=session, bulletin_id=bulletin_id)
    return service.revisions(session=session, bulletin_id=bulletin_id, limit=window.limit, offset=window.offset)


@router.post("/bulletins/{bulletin_id}/retract", response_model=BulletinPublic)
def retract_bulletin(bulletin_id: Id, data: RetractBody, user: CommunicationsUser, session: SessionDep) -> Bulletin:
    """Retract a published update: its page stays with a notice; the CAP feed emits a Cancel."""
    bulletin = service.get(session=session, bulletin_id=bulletin_id)
    return service.retract(session=session, actor=user, bulletin=bulletin, reason=data.reason)


# --- rumours ---------------------------------------------------------------------------------------------


@router.get("/rumours", response_model=Page[RumourPublic])
def list_rumours(
    user: CommunicationsUser, session: SessionDep, page: PageDep, status: RumourStatus | None = None
) -> Page:
    """The rumour log: unresolved and riskiest first."""
    items, total = service.list_rumours(session=session, status=status, limit=page.limit, offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post("/rumours", status_code=status.HTTP_201_CREATED, response_model=RumourPublic)
def log_rumour(data: RumourCreate, user: CommunicationsUser, session: SessionDep) -> Rumour:
    """Record a circulating rumour."""
    return service.log_rumour(session=session, actor=user, data=data)


@router.get("/rumours/{rumour_id}", response_model=RumourPublic)
def get_rumour(rumour_id: Id, user: CommunicationsUser, session: SessionDep) -> Rumour:
    return service.get_rumour(session=session, rumour_id=rumour_id)


@router.patch("/rumours/{rumour_id}", response_model=RumourPublic)
def update_rumour(rumour_id: Id, data: RumourUpdate, user: CommunicationsUser, session: SessionDep) -> Rumour:
    """Change what is known (seen again, more reports, under investigation, its answering update)."""
    rumour = service.get_rumour(session=session, rumour_id=rumour_id)
    return service.update_rumour(session=session, actor=user, rumour=rumour, data=data)


@router.post("/rumours/{rumour_id}/verdict", response_model=RumourPublic)
def record_verdict(rumour_id: Id, data: VerdictBody, user: CommunicationsUser, session: SessionDep) -> Rumour:
    """Record (or revise) the verdict, its evidence and the approved response."""
    rumour = service.get_rumour(session=session, rumour_id=rumour_id)
    return service.record_verdict(session=session, actor=user, rumour=rumour, data=data)


@router.post("/rumours/{rumour_id}/fact-check", status_code=status.HTTP_201_CREATED, response_model=BulletinPublic)
def draft_fact_check(rumour_id: Id, user: CommunicationsUser, session: SessionDep) -> Bulletin:
    """Draft the public update that answers the rumour (it is reviewed like any other)."""
    rumour = service.get_rumour(session=session, rumour_id=rumour_id)
    area = settings.municipality_name if rumour.language == "bg" else settings.municipality_name_en
    return service.draft_fact_check(session=session, actor=user, rumour=rumour, area_desc=area)
