"""JSON routes of consultations, submissions and decisions (`/api/v1/consultations/...`).

Coordinators (and admins) run consultations. A partner user sees the consultations their organisation may
take part in, and only their own organisation's submission; anything else is the same 404 as a missing id.
"""

from typing import Annotated

from fastapi import APIRouter, File, Request, Response, UploadFile, status
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from service.auth import CoordinatorUser, CurrentUser, logged_in_user
from service.config import settings
from service.consultations import service
from service.consultations.models import (
    Consultation,
    ConsultationCreate,
    ConsultationPublic,
    ConsultationStatus,
    ConsultationUpdate,
    DecisionCreate,
    DecisionPublic,
    Submission,
    SubmissionCreate,
    SubmissionPublic,
)
from service.db import Id, SessionDep, request_session
from service.errors import API_ERRORS, Forbidden, NotFound
from service.i18n import N_
from service.limits import ListWindow
from service.pagination import Page, PageDep
from service.users.models import Role, User

router = APIRouter(prefix="/api/v1", tags=["consultations"], responses=API_ERRORS)


def coordinates(user: User) -> bool:
    return user.has_role(Role.admin, Role.coordinator)


def _partner_org(user: User) -> int:
    if not user.has_role(Role.partner) or user.organisation_id is None:
        raise Forbidden(N_("Your role does not allow this."))
    return user.organisation_id


def visible(session: Session, user: User, consultation_id: int) -> Consultation:
    """The consultation if the user may see it: staff who coordinate, or a partner who may take part."""
    consultation = service.get(session=session, consultation_id=consultation_id)
    if coordinates(user):
        return consultation
    organisation_id = _partner_org(user)
    if not service.may_take_part(session=session, consultation=consultation, organisation_id=organisation_id):
        raise NotFound(service.NO_SUCH_CONSULTATION)
    return consultation


@router.get("/consultations", response_model=Page[ConsultationPublic])
def list_consultations(
    user: CurrentUser, session: SessionDep, page: PageDep, status: ConsultationStatus | None = None
) -> Page:
    """Consultations, the latest closing first; a partner user sees those their organisation may take part in."""
    organisation_id = None if coordinates(user) else _partner_org(user)
    items, total = service.list_consultations(
        session=session, status=status, organisation_id=organisation_id, limit=page.limit, offset=page.offset
    )
    return Page(
        items=[_shown_to(user, service.public_view(session, c)) for c in items],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post("/consultations", status_code=status.HTTP_201_CREATED, response_model=ConsultationPublic)
def create_consultation(data: ConsultationCreate, user: CoordinatorUser, session: SessionDep) -> ConsultationPublic:
    """Draft a consultation: its question, the measures proposed, when it takes submissions, whom it invites."""
    return service.public_view(session, service.create(session=session, actor=user, data=data))


@router.get("/consultations/{consultation_id}", response_model=ConsultationPublic)
def get_consultation(consultation_id: Id, user: CurrentUser, session: SessionDep) -> ConsultationPublic:
    return _shown_to(user, service.public_view(session, visible(session, user, consultation_id)))


def _shown_to(user: User, view: ConsultationPublic) -> ConsultationPublic:
    """A partner learns whether their own organisation is invited, not which others are."""
    if not coordinates(user):
        view.invited_ids = [i for i in view.invited_ids if i == user.organisation_id]
    return view


@router.patch("/consultations/{consultation_id}", response_model=ConsultationPublic)
def update_consultation(
    consultation_id: Id, data: ConsultationUpdate, user: CoordinatorUser, session: SessionDep
) -> ConsultationPublic:
    """Change a draft consultation."""
    consultation = service.get(session=session, consultation_id=consultation_id)
    return service.public_view(
        session, service.update(session=session, actor=user, consultation=consultation, data=data)
    )


@router.post("/consultations/{consultation_id}/open", response_model=ConsultationPublic)
def open_consultation(consultation_id: Id, user: CoordinatorUser, session: SessionDep) -> ConsultationPublic:
    """Open a draft: the invited organisations (or all verified partners) are told by e-mail."""
    consultation = service.get(session=session, consultation_id=consultation_id)
    return service.public_view(
        session, service.open_consultation(session=session, actor=user, consultation=consultation)
    )


@router.post("/consultations/{consultation_id}/close", response_model=ConsultationPublic)
def close_consultation(consultation_id: Id, user: CoordinatorUser, session: SessionDep) -> ConsultationPublic:
    """Close an open consultation before its time (a job closes it at its closing time)."""
    consultation = service.get(session=session, consultation_id=consultation_id)
    return service.public_view(session, service.close(session=session, actor=user, consultation=consultation))


@router.get("/consultations/{consultation_id}/submissions", response_model=list[SubmissionPublic])
def list_submissions(consultation_id: Id, user: CurrentUser, session: SessionDep, window: ListWindow) -> list:
    """All submissions for staff (`limit` of them, 500 at most); a partner user gets only their own organisation's."""
    consultation = visible(session, user, consultation_id)
    organisation_id = None if coordinates(user) else user.organisation_id
    return service.submissions(
        session=session,
        consultation_id=consultation.id,
        organisation_id=organisation_id,
        limit=window.limit,
        offset=window.offset,
    )


@router.post(
    "/consultations/{consultation_id}/submissions",
    status_code=status.HTTP_201_CREATED,
    response_model=SubmissionPublic,
    responses={200: {"model": SubmissionPublic, "description": "The organisation's earlier submission, revised."}},
)
def submit(
    consultation_id: Id, data: SubmissionCreate, user: CurrentUser, session: SessionDep, response: Response
) -> SubmissionPublic:
    """Your organisation's position (support / oppose / amend) with comments; sending again revises it until
    the consultation closes. `public` says whether it may be published with the decision."""
    organisation_id = _partner_org(user)
    consultation = visible(session, user, consultation_id)
    submission, created = service.submit(
        session=session, actor=user, consultation=consultation, organisation_id=organisation_id, data=data
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return submission


def _own_or_staff_submission(
    session: Session, user: User, consultation_id: int, submission_id: int
) -> tuple[Consultation, Submission]:
    consultation = visible(session, user, consultation_id)
    submission = service.get_submission(session=session, consultation_id=consultation.id, submission_id=submission_id)
    if not coordinates(user) and submission.organisation_id != user.organisation_id:
        raise NotFound(service.NO_SUCH_SUBMISSION)
    return consultation, submission


@router.put("/consultations/{consultation_id}/submissions/{submission_id}/attachment", response_model=SubmissionPublic)
async def attach(
    consultation_id: Id,
    submission_id: Id,
    request: Request,
    file: Annotated[UploadFile, File(description="A PDF, at most `ACCORD_ATTACHMENT_MAX_MB`.")],
) -> SubmissionPublic:
    """Attach a PDF to your organisation's submission (replacing an earlier one) while the consultation is open."""
    # At most one byte over the limit is read: the service refuses that as too large, after the caller's
    # right to the submission is checked (a stranger learns nothing, not even that the file was too big).
    data = await file.read(int(settings.attachment_max_mb * 1024 * 1024) + 1)

    def work(session: Session) -> SubmissionPublic:
        user = logged_in_user(request, session)
        _partner_org(user)
        consultation, submission = _own_or_staff_submission(session, user, consultation_id, submission_id)
        updated = service.attach(
            session=session, actor=user, consultation=consultation, submission=submission,
            filename=file.filename or "attachment.pdf", data=data,
        )  # fmt: skip
        return SubmissionPublic.model_validate(updated.model_dump())

    async with request_session(request, write=True) as session:
        return await run_in_threadpool(work, session)


@router.get(
    "/consultations/{consultation_id}/submissions/{submission_id}/attachment",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "The attached PDF."}},
)
def attachment(consultation_id: Id, submission_id: Id, user: CurrentUser, session: SessionDep) -> Response:
    """The PDF attached to a submission (staff, or the organisation that submitted it)."""
    _consultation, submission = _own_or_staff_submission(session, user, consultation_id, submission_id)
    return Response(
        service.attachment_bytes(submission),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="submission-{submission.id}.pdf"',
                 "Cache-Control": "private, no-store"},
    )  # fmt: skip


@router.get("/consultations/{consultation_id}/decision", response_model=DecisionPublic)
def get_decision(consultation_id: Id, user: CurrentUser, session: SessionDep) -> DecisionPublic:
    """The decision with its votes and tally (for partners, once it is published)."""
    consultation = visible(session, user, consultation_id)
    decision = service.decision_of(session=session, consultation_id=consultation.id)
    if decision is None or (not coordinates(user) and decision.published_at is None):
        raise NotFound(N_("No decision has been recorded yet."))
    return service.decision_view(session, decision)


@router.post(
    "/consultations/{consultation_id}/decision", status_code=status.HTTP_201_CREATED, response_model=DecisionPublic
)
def record_decision(
    consultation_id: Id, data: DecisionCreate, user: CoordinatorUser, session: SessionDep
) -> DecisionPublic:
    """Record the decision (text, date, each stakeholder's vote) after the consultation closed; until it is
    published, recording again replaces it."""
    consultation = service.get(session=session, consultation_id=consultation_id)
    decision = service.record_decision(session=session, actor=user, consultation=consultation, data=data)
    return service.decision_view(session, decision)


@router.post("/consultations/{consultation_id}/decision/publish", response_model=DecisionPublic)
def publish_decision(consultation_id: Id, user: CoordinatorUser, session: SessionDep) -> DecisionPublic:
    """Publish the decision to the public archive (`/decisions`)."""
    consultation = service.get(session=session, consultation_id=consultation_id)
    decision = service.publish_decision(session=session, actor=user, consultation=consultation)
    return service.decision_view(session, decision)
