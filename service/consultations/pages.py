"""The staff's consultation pages: the list, drafting and editing, one consultation with every submission
side by side and its tally, closing it, and recording and publishing the decision with the votes.

Coordinators and administrators act here; other staff get 403, like partners.
"""

import re
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from sqlmodel import Session, col, select
from starlette.datastructures import FormData

from service.auth import CoordinatorUser, check_csrf
from service.bulletins import markdown
from service.config import settings
from service.consultations import service
from service.consultations.models import (
    POSITION_LABELS,
    STATUS_LABELS,
    VOTE_LABELS,
    Consultation,
    ConsultationCreate,
    ConsultationStatus,
    ConsultationUpdate,
    Decision,
    DecisionCreate,
    Submission,
    VoteIn,
)
from service.db import Id, SessionDep, utcnow
from service.emergencies import service as emergencies
from service.emergencies.models import Emergency
from service.errors import DomainError, InvalidFields, NotFound
from service.i18n import N_, gettext_for, local_input_value
from service.pagination import PageDep
from service.partners import service as partners
from service.partners.models import VERIFICATION_LABELS, Organisation, VerificationStatus
from service.web import FormDep, form_values, parse_form, parse_typed_form, redirect, render

router = APIRouter(dependencies=[Depends(check_csrf)], include_in_schema=False)

LABELS = {
    "status": STATUS_LABELS,
    "positions": POSITION_LABELS,
    "votes": VOTE_LABELS,
    "verification": VERIFICATION_LABELS,
}
DONE_MESSAGES = {
    "created": N_("The consultation is saved as a draft. Open it when it is ready: the invited are told by e-mail."),
    "saved": N_("The draft is saved."),
    "opened": N_("The consultation is open; the organisations taking part are told by e-mail."),
    "closed": N_("The consultation is closed: no more submissions are taken."),
    "recorded": N_("The decision is recorded. Publish it when it may be read by the public."),
    "published": N_("The decision is published in the public archive."),
}
NO_ONE_INVITED = N_("Invite at least one organisation, or open it to all verified partners.")
NOT_A_DATE = N_("Enter a date.")
FORM_FIELDS = tuple(ConsultationCreate.model_fields)
# A municipality's partners fit in one list; past this many, the form offers the first ones only.
ORGANISATIONS_SHOWN = 500
EMERGENCIES_SHOWN = 100
VOTE_FIELD = re.compile(r"^vote\.(\d{1,10})$")


def coordinated_consultation(consultation_id: Id, user: CoordinatorUser, session: SessionDep) -> Consultation:
    return service.get(session=session, consultation_id=consultation_id)


CoordinatedConsultation = Annotated[Consultation, Depends(coordinated_consultation)]


def _errors_of(error: DomainError, request: Request) -> dict[str, str]:
    gettext = gettext_for(request)
    if isinstance(error, InvalidFields):
        return error.texts(gettext)
    return {error.field or "__all__": error.text(gettext)}


def _done(request: Request) -> str | None:
    key = request.query_params.get("done")
    return DONE_MESSAGES.get(key) if key else None


def _names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.exec(select(Organisation.id, Organisation.name).where(col(Organisation.id).in_(ids))).all())


# --- the list --------------------------------------------------------------------------------------------


@router.get("/staff/consultations", response_class=HTMLResponse)
def consultations(
    request: Request,
    user: CoordinatorUser,
    session: SessionDep,
    page: PageDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    # A status a hand-edited URL got wrong lists them all rather than failing.
    chosen = ConsultationStatus(status) if status in ConsultationStatus.__members__ else None
    items, total = service.list_consultations(session=session, status=chosen, limit=page.limit, offset=page.offset)
    return render(
        request,
        "staff/consultations/list.html",
        {
            "consultations": items,
            "total": total,
            "page": page,
            "status": chosen,
            "labels": LABELS,
            "done": _done(request),
        },
    )


# --- drafting and editing --------------------------------------------------------------------------------


def _organisations(session: Session, chosen: set[str]) -> list[Organisation]:
    """Those who may be invited: verified first, then pending; a suspended one only if already chosen."""
    found = []
    for status in (VerificationStatus.verified, VerificationStatus.pending):
        filters = partners.OrganisationFilter(verification_status=status)
        found += partners.search(session=session, filters=filters, limit=ORGANISATIONS_SHOWN)[0]
    ids = {int(i) for i in chosen if i.isdigit()} - {o.id for o in found}
    if ids:
        found += session.exec(select(Organisation).where(col(Organisation.id).in_(ids))).all()
    return found


def _form_page(
    request: Request,
    session: Session,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    *,
    consultation: Consultation | None = None,
    status_code: int = 200,
) -> Response:
    chosen = {str(i) for i in values.get("invited_ids", [])}
    return render(
        request,
        "staff/consultations/form.html",
        {
            "consultation": consultation,
            "values": values,
            "errors": errors or {},
            "chosen": chosen,
            "organisations": _organisations(session, chosen),
            "emergencies": emergencies.list_emergencies(session=session, limit=EMERGENCIES_SHOWN)[0],
            "labels": LABELS,
        },
        status_code,
    )


def _form_input(form: FormData) -> dict[str, Any]:
    values = form_values(form, lists=("invited_ids",), booleans=("open_to_all",))
    return {k: v for k, v in values.items() if k in FORM_FIELDS}


def _parse(values: dict[str, Any], request: Request) -> tuple[ConsultationCreate | None, dict[str, str]]:
    """The form as the create schema (editing sends every field too), or None and the messages per field."""
    data, errors = parse_typed_form(ConsultationCreate, values, request, times=("opens_at", "closes_at"))
    # A consultation nobody may answer is of no use: the form asks for its stakeholders at once, though the
    # API keeps such a draft and refuses only to open it.
    if not values.get("invited_ids") and not values.get("open_to_all"):
        errors["invited_ids"] = gettext_for(request)(NO_ONE_INVITED)
    return (None if errors else data), errors


@router.get("/staff/consultations/new", response_class=HTMLResponse)
def new_consultation(request: Request, user: CoordinatorUser, session: SessionDep) -> Response:
    now = utcnow()
    values = {"opens_at": local_input_value(now), "closes_at": local_input_value(now + timedelta(days=14))}
    return _form_page(request, session, values)


@router.post("/staff/consultations/new", response_class=HTMLResponse)
def create_consultation(request: Request, user: CoordinatorUser, session: SessionDep, form: FormDep) -> Response:
    values = _form_input(form)
    data, errors = _parse(values, request)
    if data is not None:
        try:
            consultation = service.create(session=session, actor=user, data=data)
        except DomainError as error:
            session.rollback()
            errors = _errors_of(error, request)
        else:
            return redirect(f"/staff/consultations/{consultation.id}?done=created")
    return _form_page(request, session, values, errors, status_code=422)


def _draft_values(session: Session, consultation: Consultation) -> dict[str, Any]:
    return {
        "title": consultation.title,
        "question": consultation.question,
        "measures": consultation.measures,
        "emergency_id": str(consultation.emergency_id or ""),
        "opens_at": local_input_value(consultation.opens_at),
        "closes_at": local_input_value(consultation.closes_at),
        "invited_ids": [str(i) for i in service.invited_ids(session=session, consultation_id=consultation.id)],
        "open_to_all": consultation.open_to_all,
    }


@router.get("/staff/consultations/{consultation_id}/edit", response_class=HTMLResponse)
def edit_consultation(request: Request, consultation: CoordinatedConsultation, session: SessionDep) -> Response:
    if consultation.status != ConsultationStatus.draft:  # invitations went out: the text is what was asked
        return redirect(f"/staff/consultations/{consultation.id}")
    return _form_page(request, session, _draft_values(session, consultation), consultation=consultation)


@router.post("/staff/consultations/{consultation_id}/edit", response_class=HTMLResponse)
def update_consultation(
    request: Request, consultation: CoordinatedConsultation, user: CoordinatorUser, session: SessionDep, form: FormDep
) -> Response:
    values = _form_input(form)
    data, errors = _parse(values, request)
    if data is not None:
        try:
            service.update(
                session=session, actor=user, consultation=consultation, data=ConsultationUpdate(**data.model_dump())
            )
        except DomainError as error:
            session.rollback()
            if error.field is None and not isinstance(error, InvalidFields):
                return _detail_again(request, session, consultation, "edit", error)
            errors = _errors_of(error, request)
        else:
            return redirect(f"/staff/consultations/{consultation.id}?done=saved")
    return _form_page(request, session, values, errors, consultation=consultation, status_code=422)


# --- one consultation ------------------------------------------------------------------------------------


def _decision_values(session: Session, decision: Decision | None) -> dict[str, Any]:
    """The decision form's first values: the recorded decision's, or today's date (local) and no votes."""
    if decision is None:
        return {"text": "", "decided_on": datetime.now(ZoneInfo(settings.timezone)).date().isoformat()}
    votes = service.votes_of(session=session, decision_id=decision.id)
    return {
        "text": decision.text,
        "decided_on": decision.decided_on.isoformat(),
        **{f"vote.{v.organisation_id}": v.vote.value for v in votes},
    }


def _detail(
    request: Request,
    session: Session,
    consultation: Consultation,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    submissions = service.submissions(session=session, consultation_id=consultation.id)
    invited = service.invited_ids(session=session, consultation_id=consultation.id)
    eligible = service.eligible_ids(session=session, consultation=consultation)
    decision = service.decision_of(session=session, consultation_id=consultation.id)
    votes = service.votes_of(session=session, decision_id=decision.id) if decision else []
    names = _names(session, {*invited, *eligible, *(s.organisation_id for s in submissions)})
    submitted = {s.organisation_id for s in submissions}
    now = utcnow()
    context = context or {}
    failed = context.get("failed") or {}
    return render(
        request,
        "staff/consultations/detail.html",
        {
            "consultation": consultation,
            "measures_html": Markup(markdown.to_html(consultation.measures)),  # noqa: S704 (sanitised by nh3)
            "emergency": session.get(Emergency, consultation.emergency_id) if consultation.emergency_id else None,
            "accepting": service.accepting(consultation, now),
            "not_yet_open": now < consultation.opens_at,
            "invited": sorted(invited, key=lambda i: names.get(i, "")),
            "eligible": sorted(eligible, key=lambda i: names.get(i, "")),
            "silent": sorted(eligible - submitted, key=lambda i: names.get(i, "")),
            "names": names,
            "submissions": submissions,
            "tally": service.position_tally(submissions),
            "decision": decision,
            "decision_html": Markup(markdown.to_html(decision.text)) if decision else None,  # noqa: S704 (sanitised)
            "votes": votes,
            "vote_tally": service.vote_tally(votes),
            "decision_values": failed.get("input") if failed.get("form") == "decision" else None,
            "default_decision": _decision_values(session, decision),
            "failed": failed,
            "done": _done(request),
            "labels": LABELS,
        },
        status_code,
    )


def _detail_again(
    request: Request,
    session: Session,
    consultation: Consultation,
    form: str,
    error: DomainError | None,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
) -> Response:
    """The page shown again after a refusal, the transaction let go first (and the row read afresh)."""
    session.rollback()
    failed = {"form": form, "errors": errors or _errors_of(error, request), "input": values or {}}
    return _detail(request, session, consultation, {"failed": failed}, error.status_code if error else 422)


@router.get("/staff/consultations/{consultation_id}", response_class=HTMLResponse)
def consultation_page(request: Request, consultation: CoordinatedConsultation, session: SessionDep) -> Response:
    return _detail(request, session, consultation)


@router.post("/staff/consultations/{consultation_id}/open", response_class=HTMLResponse)
def open_consultation(
    request: Request, consultation: CoordinatedConsultation, user: CoordinatorUser, session: SessionDep
) -> Response:
    try:
        service.open_consultation(session=session, actor=user, consultation=consultation)
    except DomainError as error:
        return _detail_again(request, session, consultation, "open", error)
    return redirect(f"/staff/consultations/{consultation.id}?done=opened")


@router.post("/staff/consultations/{consultation_id}/close", response_class=HTMLResponse)
def close_consultation(
    request: Request, consultation: CoordinatedConsultation, user: CoordinatorUser, session: SessionDep
) -> Response:
    try:
        service.close(session=session, actor=user, consultation=consultation)
    except DomainError as error:
        return _detail_again(request, session, consultation, "close", error)
    return redirect(f"/staff/consultations/{consultation.id}?done=closed")


def _decision_input(form: FormData) -> tuple[dict[str, Any], dict[str, Any]]:
    """The form as typed (to show again) and shaped for DecisionCreate: a vote per organisation that has one."""
    values = form_values(form)
    votes = []
    for key, value in values.items():
        match = VOTE_FIELD.match(key)
        if match and value:
            votes.append({"organisation_id": int(match.group(1)), "vote": value})
    data = {"text": values.get("text"), "decided_on": values.get("decided_on"), "votes": votes}
    return values, {k: v for k, v in data.items() if v is not None}


def _vote_errors(errors: dict[str, str], votes: list[dict[str, Any]]) -> dict[str, str]:
    """Messages about `votes.N...` placed beside the vote of the organisation they are about."""
    placed = {}
    for key, message in errors.items():
        parts = key.split(".")
        if parts[0] == "votes" and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < len(votes):
            placed[f"vote.{votes[int(parts[1])]['organisation_id']}"] = message
        else:
            placed[key] = message
    return placed


def _single_vote_errors(data: dict[str, Any], gettext: Any, errors: dict[str, str]) -> dict[str, str]:
    """`parse_form` names only the top field (`votes`): each vote is checked on its own to place its message."""
    if "votes" not in errors:
        return errors
    placed = {k: v for k, v in errors.items() if k != "votes"}
    for vote in data["votes"]:
        _parsed, wrong = parse_form(VoteIn, vote, gettext)
        if wrong:
            placed[f"vote.{vote['organisation_id']}"] = next(iter(wrong.values()))
    if len(placed) == len(errors) - 1:  # no single vote was wrong: the list as a whole is (too many)
        placed["votes"] = errors["votes"]
    return placed


@router.post("/staff/consultations/{consultation_id}/decision", response_class=HTMLResponse)
def record_decision(
    request: Request, consultation: CoordinatedConsultation, user: CoordinatorUser, session: SessionDep, form: FormDep
) -> Response:
    values, data = _decision_input(form)
    gettext = gettext_for(request)
    parsed, errors = parse_form(DecisionCreate, data, gettext)
    if parsed is None:
        errors = _single_vote_errors(data, gettext, errors)
        if "decided_on" in errors and data.get("decided_on"):
            errors["decided_on"] = gettext(NOT_A_DATE)
        return _detail_again(request, session, consultation, "decision", None, errors=errors, values=values)
    try:
        service.record_decision(session=session, actor=user, consultation=consultation, data=parsed)
    except DomainError as error:
        errors = _vote_errors(_errors_of(error, request), data["votes"])
        return _detail_again(request, session, consultation, "decision", error, errors=errors, values=values)
    return redirect(f"/staff/consultations/{consultation.id}?done=recorded#decision")


@router.post("/staff/consultations/{consultation_id}/decision/publish", response_class=HTMLResponse)
def publish_decision(
    request: Request, consultation: CoordinatedConsultation, user: CoordinatorUser, session: SessionDep
) -> Response:
    try:
        service.publish_decision(session=session, actor=user, consultation=consultation)
    except DomainError as error:
        return _detail_again(request, session, consultation, "publish", error)
    return redirect(f"/staff/consultations/{consultation.id}?done=published#decision")


@router.get("/staff/consultations/{consultation_id}/submissions/{submission_id}/attachment")
def submission_attachment(consultation: CoordinatedConsultation, submission_id: Id, session: SessionDep) -> Response:
    """A submission's attached PDF, for staff to read."""
    submission = service.get_submission(session=session, consultation_id=consultation.id, submission_id=submission_id)
    return attachment_response(submission)


def attachment_response(submission: Submission) -> Response:
    """The PDF to save, never kept by a cache."""
    if submission.attachment_sha256 is None:
        raise NotFound(N_("This submission has no attachment."))
    return Response(
        service.attachment_bytes(submission),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="submission-{submission.id}.pdf"',
                 "Cache-Control": "private, no-store"},
    )  # fmt: skip
