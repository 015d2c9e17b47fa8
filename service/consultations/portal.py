"""The partner portal's consultations: those the organisation may take part in, each with its question and
measures, the organisation's own position (sent, revised, with a PDF) while it is open, and the decision
once published.

Only a partner user acting for an organisation comes in (403 for anyone else); a consultation the
organisation may not take part in is the same 404 as one that never existed, and other organisations'
submissions are never shown.
"""

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from sqlmodel import Session, col, select
from starlette.datastructures import FormData, UploadFile

from service.auth import CurrentUser, check_csrf
from service.bulletins import markdown
from service.config import settings
from service.consultations import service
from service.consultations.models import (
    POSITION_LABELS,
    STATUS_LABELS,
    VOTE_LABELS,
    Consultation,
    ConsultationStatus,
    Submission,
    SubmissionCreate,
)
from service.consultations.pages import attachment_response
from service.db import Id, SessionDep, utcnow
from service.errors import DomainError, InvalidFields, NotFound
from service.i18n import N_, gettext_for
from service.pagination import PageDep
from service.partners.models import Organisation
from service.partners.pages import OwnOrganisation
from service.web import FormDep, form_values, parse_form, redirect, render

router = APIRouter(dependencies=[Depends(check_csrf)], include_in_schema=False)

LABELS = {"status": STATUS_LABELS, "positions": POSITION_LABELS, "votes": VOTE_LABELS}
DONE_MESSAGES = {
    "submitted": N_("Your organisation's position is recorded. You may revise it until the consultation closes."),
    "revised": N_("Your organisation's position is revised."),
}
SUBMISSION_FIELDS = ("position", "comments", "public")


def portal_consultation(session: Session, org: Organisation, consultation_id: int) -> Consultation:
    """The consultation if the organisation may take part in it; else 404, as if it did not exist."""
    consultation = service.get(session=session, consultation_id=consultation_id)
    if not service.may_take_part(session=session, consultation=consultation, organisation_id=org.id):
        raise NotFound(service.NO_SUCH_CONSULTATION)
    return consultation


def _own_submission(session: Session, consultation: Consultation, org: Organisation) -> Submission | None:
    found = service.submissions(session=session, consultation_id=consultation.id, organisation_id=org.id)
    return found[0] if found else None


# --- the list --------------------------------------------------------------------------------------------


@router.get("/portal/consultations", response_class=HTMLResponse)
def consultations(request: Request, org: OwnOrganisation, session: SessionDep, page: PageDep) -> Response:
    items, total = service.list_consultations(
        session=session, organisation_id=org.id, limit=page.limit, offset=page.offset
    )
    open_ = sorted((c for c in items if c.status == ConsultationStatus.open), key=lambda c: (c.closes_at, c.id))
    ended = [c for c in items if c.status != ConsultationStatus.open]  # already the latest closing first
    ids = [c.id for c in items]
    submitted = {
        s.consultation_id: s
        for s in session.exec(
            select(Submission).where(col(Submission.consultation_id).in_(ids), Submission.organisation_id == org.id)
        )
    }
    now = utcnow()
    return render(
        request,
        "portal/consultations/list.html",
        {
            "org": org,
            "open": open_,
            "ended": ended,
            "accepting": {c.id for c in open_ if service.accepting(c, now)},
            "submitted": submitted,
            "total": total,
            "page": page,
            "labels": LABELS,
        },
    )


# --- one consultation ------------------------------------------------------------------------------------


def _detail(
    request: Request,
    session: Session,
    org: Organisation,
    consultation: Consultation,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    own = _own_submission(session, consultation, org)
    decision = service.decision_of(session=session, consultation_id=consultation.id)
    if decision is not None and decision.published_at is None:
        decision = None  # a decision is the partners' to read once it is published
    votes = service.votes_of(session=session, decision_id=decision.id) if decision else []
    ids = {v.organisation_id for v in votes}
    names = (
        dict(session.exec(select(Organisation.id, Organisation.name).where(col(Organisation.id).in_(ids))).all())
        if ids
        else {}
    )
    now = utcnow()
    key = request.query_params.get("done")
    context = context or {}
    values = context.get("values")
    if values is None:
        values = {"position": own.position.value, "comments": own.comments, "public": own.public} if own else {}
    return render(
        request,
        "portal/consultations/detail.html",
        {
            "org": org,
            "consultation": consultation,
            "measures_html": Markup(markdown.to_html(consultation.measures)),  # noqa: S704 (sanitised by nh3)
            "accepting": service.accepting(consultation, now),
            "not_yet_open": consultation.status == ConsultationStatus.open and now < consultation.opens_at,
            "own": own,
            "decision": decision,
            "decision_html": Markup(markdown.to_html(decision.text)) if decision else None,  # noqa: S704 (sanitised)
            "votes": votes,
            "vote_tally": service.vote_tally(votes),
            "names": names,
            "values": values,
            "errors": context.get("errors") or {},
            "refusal": context.get("refusal"),
            "max_mb": f"{settings.attachment_max_mb:g}",
            "done": DONE_MESSAGES.get(key) if key else None,
            "labels": LABELS,
        },
        status_code,
    )


@router.get("/portal/consultations/{consultation_id}", response_class=HTMLResponse)
def consultation_page(request: Request, consultation_id: Id, org: OwnOrganisation, session: SessionDep) -> Response:
    return _detail(request, session, org, portal_consultation(session, org, consultation_id))


def _upload(form: FormData, request: Request) -> tuple[tuple[str, bytes] | None, dict[str, str]]:
    """The chosen file (its name and bytes) checked before anything is saved; no file chosen is None."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None, {}
    limit = int(settings.attachment_max_mb * 1024 * 1024)
    data = upload.file.read(limit + 1)  # a route in the thread pool: the spooled file is read as it is
    try:
        service.check_attachment(data)
    except DomainError as error:
        return None, {"file": error.text(gettext_for(request))}
    return (upload.filename, data), {}


@router.post("/portal/consultations/{consultation_id}/submission", response_class=HTMLResponse)
def submit(
    request: Request,
    consultation_id: Id,
    org: OwnOrganisation,
    user: CurrentUser,
    session: SessionDep,
    form: FormDep,
) -> Response:
    """The organisation's position, new or revised, with an optional PDF (a multipart form)."""
    consultation = portal_consultation(session, org, consultation_id)
    values = form_values(form, booleans=("public",))
    values = {k: v for k, v in values.items() if k in SUBMISSION_FIELDS}
    data, errors = parse_form(SubmissionCreate, values, gettext_for(request))
    upload, file_errors = _upload(form, request)
    errors = {**errors, **file_errors}
    status_code = 422
    refusal = None
    if not errors:
        try:
            submission, created = service.submit(
                session=session, actor=user, consultation=consultation, organisation_id=org.id, data=data
            )
            if upload is not None:
                service.attach(
                    session=session, actor=user, consultation=consultation, submission=submission,
                    filename=upload[0], data=upload[1],
                )  # fmt: skip
        except DomainError as error:
            session.rollback()
            status_code = error.status_code
            if isinstance(error, InvalidFields):
                errors = error.texts(gettext_for(request))
            elif error.field:
                errors = {error.field: error.text(gettext_for(request))}
            else:  # closed, not yet open: the page says so where the form was
                refusal = error.text(gettext_for(request))
        else:
            done = "submitted" if created else "revised"
            return redirect(f"/portal/consultations/{consultation.id}?done={done}#own-submission")
    context = {"values": values, "errors": errors, "refusal": refusal}
    return _detail(request, session, org, consultation, context, status_code)


@router.get("/portal/consultations/{consultation_id}/submissions/{submission_id}/attachment")
def own_attachment(consultation_id: Id, submission_id: Id, org: OwnOrganisation, session: SessionDep) -> Response:
    """The PDF the organisation attached to its own submission."""
    consultation = portal_consultation(session, org, consultation_id)
    submission = service.get_submission(session=session, consultation_id=consultation.id, submission_id=submission_id)
    if submission.organisation_id != org.id:
        raise NotFound(service.NO_SUCH_SUBMISSION)
    return attachment_response(submission)
