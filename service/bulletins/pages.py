"""The staff's pages of public updates and the rumour log: the lists and their filters, the drafting form,
one update with the actions its status allows (review by a second officer, corrections, retraction), and each
rumour with its verdict and the fact-check that answers it.

Communications officers (and administrators) only. The rules and their refusals are the service's: a refusal
comes back as the page again, its message beside the form it concerns and the input kept.
"""

from collections.abc import Callable
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from sqlmodel import Session, col, select

from service.auth import CommunicationsUser, check_csrf
from service.bulletins import markdown, service
from service.bulletins.models import (
    CAP_CATEGORY_LABELS,
    CAP_SEVERITY_LABELS,
    CATEGORY_LABELS,
    CERTAINTY_LABELS,
    RESPONSE_TYPE_LABELS,
    RISK_LABELS,
    RUMOUR_STATUS_LABELS,
    STATUS_LABELS,
    URGENCY_LABELS,
    VERDICT_LABELS,
    ApproveBody,
    Bulletin,
    BulletinCreate,
    BulletinStatus,
    BulletinUpdate,
    CorrectionCreate,
    RetractBody,
    ReviewReturn,
    Rumour,
    RumourCreate,
    RumourStatus,
    RumourUpdate,
    VerdictBody,
)
from service.config import settings
from service.db import Id, SessionDep
from service.emergencies.models import Emergency
from service.emergencies.service import list_emergencies
from service.errors import DomainError, NotAuthenticated, NotFound
from service.i18n import LANGUAGE_LABELS, LANGUAGES, N_, gettext_for, local_input_value
from service.pagination import PageDep
from service.users.models import User
from service.web import FormDep, form_values, parse_typed_form, redirect, render

router = APIRouter(dependencies=[Depends(check_csrf)], include_in_schema=False)

LABELS = {
    "status": STATUS_LABELS,
    "category": CATEGORY_LABELS,
    "urgency": URGENCY_LABELS,
    "severity": CAP_SEVERITY_LABELS,
    "certainty": CERTAINTY_LABELS,
    "cap_category": CAP_CATEGORY_LABELS,
    "response_type": RESPONSE_TYPE_LABELS,
    "languages": LANGUAGE_LABELS,
    "rumour_status": RUMOUR_STATUS_LABELS,
    "verdict": VERDICT_LABELS,
    "risk": RISK_LABELS,
}
BULLETIN_TIMES = ("effective", "expires", "publish_at")
RUMOUR_TIMES = ("first_seen", "last_seen")
# Fields of a rumour its page changes (what the log learns as it goes on circulating).
RUMOUR_EDITED = ("last_seen", "report_count", "risk", "summary", "channel", "url", "status")
# Emergencies offered in the form, the newest first; a municipality declares far fewer.
EMERGENCIES_SHOWN = 200
DONE_MESSAGES = {
    "created": N_("The draft is saved. Check it, then submit it for review."),
    "saved": N_("Saved."),
    "submitted": N_("Submitted for review: another communications officer approves it."),
    "published": N_("The update is published."),
    "scheduled": N_("The update is approved and will be published at its time."),
    "sent_back": N_("The update is sent back to its author as a draft."),
    "corrected": N_("The correction is published as a new revision."),
    "retracted": N_("The update is retracted; its public page says so."),
    "deleted": N_("The draft is deleted."),
    "logged": N_("The rumour is logged."),
    "verdict": N_("The verdict is recorded."),
}
# Refusals that are not about a form: they answer as on any other page (log in, 404).
NOT_THE_FORMS_FAULT = (NotAuthenticated, NotFound)


def errors_of(error: DomainError, request: Request) -> dict[str, str]:
    """A refusal's message, beside its field (or above the form when it names none)."""
    return {error.field or "__all__": error.text(gettext_for(request))}


def done_message(request: Request) -> str | None:
    key = request.query_params.get("done")
    return DONE_MESSAGES.get(key) if key else None


def communicated_bulletin(bulletin_id: Id, user: CommunicationsUser, session: SessionDep) -> Bulletin:
    return service.get(session=session, bulletin_id=bulletin_id)


def communicated_rumour(rumour_id: Id, user: CommunicationsUser, session: SessionDep) -> Rumour:
    return service.get_rumour(session=session, rumour_id=rumour_id)


CurrentBulletin = Annotated[Bulletin, Depends(communicated_bulletin)]
CurrentRumour = Annotated[Rumour, Depends(communicated_rumour)]


def _names(session: Session, ids: set[int | None]) -> dict[int, str]:
    """Users' names by id, for "written by" and "approved by"."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {u.id: u.full_name for u in session.exec(select(User).where(col(User.id).in_(wanted)))}


def _choice(value: str | None, allowed: Any) -> str | None:
    """A list filter's value, or None when a hand-edited URL got it wrong (ignored rather than refused)."""
    return value if value in allowed else None


def _action(
    request: Request,
    session: Session,
    form: str,
    values: dict,
    parsed: tuple[Any, dict],
    act: Callable[[Any], Any],
    done: Callable[[Any], str],
    again: Callable[[dict, int], Response],
) -> Response:
    """Runs `act(data)` for a parsed form and redirects to `done(result)`; bad input or a refusal shows the
    page again (`again(failed, status)`) with the message beside that form and the input kept."""
    data, errors = parsed
    status_code = 422
    if data is not None:
        try:
            result = act(data)
        except DomainError as refused:
            if isinstance(refused, NOT_THE_FORMS_FAULT):
                raise
            errors, status_code = errors_of(refused, request), refused.status_code
        else:
            return redirect(done(result))
    session.rollback()  # nothing half-done stays in the session the page is read with
    return again({"form": form, "input": values, "errors": errors}, status_code)


# --- the list of updates -------------------------------------------------------------------------


@router.get("/staff/bulletins", response_class=HTMLResponse)
def bulletins(
    request: Request,
    user: CommunicationsUser,
    session: SessionDep,
    page: PageDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
    language: Annotated[str | None, Query(max_length=5)] = None,
) -> Response:
    filters = {"status": _choice(status, BulletinStatus.__members__), "language": _choice(language, LANGUAGES)}
    items, total = service.list_bulletins(
        session=session, status=filters["status"], language=filters["language"], limit=page.limit, offset=page.offset
    )
    return render(
        request,
        "staff/bulletins/list.html",
        {"bulletins": items, "total": total, "page": page, "filters": filters, "labels": LABELS,
         "query": urlencode({k: v for k, v in filters.items() if v}),
         "authors": _names(session, {b.created_by_id for b in items}), "done": done_message(request)},
    )  # fmt: skip


# --- drafting ------------------------------------------------------------------------------------


def _emergencies(session: Session) -> list[Emergency]:
    return list_emergencies(session=session, limit=EMERGENCIES_SHOWN)[0]


def _form_page(
    request: Request,
    session: Session,
    values: dict,
    errors: dict,
    bulletin: Bulletin | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "staff/bulletins/form.html",
        {"values": values, "errors": errors, "bulletin": bulletin, "emergencies": _emergencies(session),
         "labels": LABELS},
        status_code,
    )  # fmt: skip


def _draft_values(bulletin: Bulletin) -> dict[str, str]:
    """A draft as its form shows it: enums by value, times local."""
    values = {name: getattr(bulletin, name) for name in BulletinCreate.model_fields}
    for name in BULLETIN_TIMES:
        values[name] = local_input_value(values[name])
    values["emergency_id"] = str(bulletin.emergency_id or "")
    values["polygon"] = bulletin.polygon or ""
    return {k: (v.value if hasattr(v, "value") else v) for k, v in values.items()}


def parse_draft(values: dict, request: Request) -> tuple[BulletinCreate | None, dict[str, str]]:
    """The drafting form as a complete update (the edit form sends every field too)."""
    return parse_typed_form(BulletinCreate, values, request, times=BULLETIN_TIMES)


@router.get("/staff/bulletins/new", response_class=HTMLResponse)
def new_bulletin(request: Request, user: CommunicationsUser, session: SessionDep) -> Response:
    language = request.query_params.get("language")
    values = {"language": _choice(language, LANGUAGES) or settings.default_language}
    return _form_page(request, session, values, {})


@router.post("/staff/bulletins/new", response_class=HTMLResponse)
def create_bulletin(request: Request, user: CommunicationsUser, session: SessionDep, form: FormDep) -> Response:
    values = form_values(form)
    data, errors = parse_draft(values, request)
    status_code = 422
    if data is not None:
        try:
            bulletin = service.create(session=session, actor=user, data=data)
        except DomainError as refused:
            session.rollback()
            errors, status_code = errors_of(refused, request), refused.status_code
        else:
            return redirect(f"/staff/bulletins/{bulletin.id}?done=created")
    return _form_page(request, session, values, errors, status_code=status_code)


@router.get("/staff/bulletins/{bulletin_id}/edit", response_class=HTMLResponse)
def edit_bulletin(request: Request, bulletin: CurrentBulletin, session: SessionDep) -> Response:
    if bulletin.status != BulletinStatus.draft:
        return redirect(f"/staff/bulletins/{bulletin.id}")
    return _form_page(request, session, _draft_values(bulletin), {}, bulletin)


@router.post("/staff/bulletins/{bulletin_id}/edit", response_class=HTMLResponse)
def update_bulletin(
    request: Request, bulletin: CurrentBulletin, user: CommunicationsUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form)
    data, errors = parse_draft(values, request)
    status_code = 422
    if data is not None:
        try:
            # Every field is on the form: a blank optional one (a polygon, a time) is cleared.
            changes = BulletinUpdate(**data.model_dump())
            service.update(session=session, actor=user, bulletin=bulletin, data=changes)
        except DomainError as refused:
            session.rollback()
            errors, status_code = errors_of(refused, request), refused.status_code
        else:
            return redirect(f"/staff/bulletins/{bulletin.id}?done=saved")
    return _form_page(request, session, values, errors, bulletin, status_code)


# --- one update ----------------------------------------------------------------------------------


def forms_shown(bulletin: Bulletin, user: User) -> set[str]:
    """The action forms an update's page shows in its status to this user (a refusal of another is shown
    on top of the page)."""
    status = bulletin.status
    if status == BulletinStatus.draft:
        return {"submit", "delete"}
    if status == BulletinStatus.in_review:
        return {"send-back"} | ({"approve"} if service.may_approve(bulletin, user) else set())
    if status == BulletinStatus.scheduled:
        return {"send-back"}
    if status == BulletinStatus.published:
        return {"corrections", "retract"}
    return set()


def _detail(
    request: Request,
    session: Session,
    bulletin: Bulletin,
    user: User,
    failed: dict | None = None,
    status_code: int = 200,
) -> Response:
    revisions = service.revisions(session=session, bulletin_id=bulletin.id)
    people = {bulletin.created_by_id, bulletin.approved_by_id, bulletin.retracted_by_id}
    return render(
        request,
        "staff/bulletins/detail.html",
        {
            "bulletin": bulletin,
            "body_html": Markup(markdown.to_html(bulletin.body)),  # noqa: S704 (sanitised by nh3)
            "instruction_html": Markup(markdown.to_html(bulletin.instruction)),  # noqa: S704 (sanitised by nh3)
            "revisions": [(r, Markup(markdown.to_html(r.body))) for r in reversed(revisions)],  # noqa: S704
            "emergency": session.get(Emergency, bulletin.emergency_id) if bulletin.emergency_id else None,
            "rumours": list(session.exec(select(Rumour).where(Rumour.bulletin_id == bulletin.id))),
            "names": _names(session, people | {r.created_by_id for r in revisions}),
            "is_author": not service.may_approve(bulletin, user),
            "forms_shown": forms_shown(bulletin, user),
            "correction": {"title": bulletin.title, "body": bulletin.body, "instruction": bulletin.instruction},
            "failed": failed or {},
            "done": done_message(request),
            "labels": LABELS,
        },
        status_code,
    )


@router.get("/staff/bulletins/{bulletin_id}", response_class=HTMLResponse)
def bulletin_page(
    request: Request, bulletin: CurrentBulletin, user: CommunicationsUser, session: SessionDep
) -> Response:
    return _detail(request, session, bulletin, user)


def _bulletin_action(
    request: Request,
    session: Session,
    bulletin: Bulletin,
    user: User,
    form: str,
    values: dict,
    parsed: tuple[Any, dict],
    act: Callable[[Any], Any],
    done: str,
) -> Response:
    return _action(
        request, session, form, values, parsed, act, lambda _b: f"/staff/bulletins/{bulletin.id}?done={done}",
        lambda failed, status_code: _detail(request, session, bulletin, user, failed, status_code),
    )  # fmt: skip


@router.post("/staff/bulletins/{bulletin_id}/submit", response_class=HTMLResponse)
def submit_bulletin(
    request: Request, bulletin: CurrentBulletin, user: CommunicationsUser, session: SessionDep
) -> Response:
    act = partial(service.submit, session=session, actor=user, bulletin=bulletin)
    return _bulletin_action(request, session, bulletin, user, "submit", {}, (True, {}), lambda _d: act(), "submitted")


@router.post("/staff/bulletins/{bulletin_id}/approve", response_class=HTMLResponse)
def approve_bulletin(
    request: Request, bulletin: CurrentBulletin, user: CommunicationsUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form)
    parsed = parse_typed_form(ApproveBody, values, request, times=("publish_at",))
    act = partial(service.approve, session=session, actor=user, bulletin=bulletin)

    def done(approved: Bulletin) -> str:
        outcome = "scheduled" if approved.status == BulletinStatus.scheduled else "published"
        return f"/staff/bulletins/{approved.id}?done={outcome}"

    return _action(
        request, session, "approve", values, parsed, lambda data: act(publish_at=data.publish_at), done,
        lambda failed, status_code: _detail(request, session, bulletin, user, failed, status_code),
    )  # fmt: skip


@router.post("/staff/bulletins/{bulletin_id}/send-back", response_class=HTMLResponse)
def send_back_bulletin(
    request: Request, bulletin: CurrentBulletin, user: CommunicationsUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form)
    parsed = parse_typed_form(ReviewReturn, values, request)
    act = partial(service.send_back, session=session, actor=user, bulletin=bulletin)
    return _bulletin_action(
        request, session, bulletin, user, "send-back", values, parsed, lambda d: act(reason=d.reason), "sent_back"
    )


@router.post("/staff/bulletins/{bulletin_id}/corrections", response_class=HTMLResponse)
def correct_bulletin(
    request: Request, bulletin: CurrentBulletin, user: CommunicationsUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form)
    fields = {k: v for k, v in values.items() if k in CorrectionCreate.model_fields}
    # The instruction is on the form with its current text: emptied, it is removed. A blank title keeps it.
    fields["instruction"] = values.get("instruction", "")
    parsed = parse_typed_form(CorrectionCreate, fields, request)
    act = partial(service.correct, session=session, actor=user, bulletin=bulletin)
    return _bulletin_action(
        request, session, bulletin, user, "corrections", values, parsed, lambda d: act(data=d), "corrected"
    )


@router.post("/staff/bulletins/{bulletin_id}/retract", response_class=HTMLResponse)
def retract_bulletin(
    request: Request, bulletin: CurrentBulletin, user: CommunicationsUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form)
    parsed = parse_typed_form(RetractBody, values, request)
    act = partial(service.retract, session=session, actor=user, bulletin=bulletin)
    return _bulletin_action(
        request, session, bulletin, user, "retract", values, parsed, lambda d: act(reason=d.reason), "retracted"
    )


@router.post("/staff/bulletins/{bulletin_id}/delete", response_class=HTMLResponse)
def delete_bulletin(
    request: Request, bulletin: CurrentBulletin, user: CommunicationsUser, session: SessionDep
) -> Response:
    act = partial(service.discard, session=session, actor=user, bulletin=bulletin)
    return _action(
        request, session, "delete", {}, (True, {}), lambda _d: act(), lambda _r: "/staff/bulletins?done=deleted",
        lambda failed, status_code: _detail(request, session, bulletin, user, failed, status_code),
    )  # fmt: skip


# --- the rumour log ------------------------------------------------------------------------------


@router.get("/staff/rumours", response_class=HTMLResponse)
def rumours(
    request: Request,
    user: CommunicationsUser,
    session: SessionDep,
    page: PageDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    chosen = _choice(status, RumourStatus.__members__)
    items, total = service.list_rumours(session=session, status=chosen, limit=page.limit, offset=page.offset)
    return render(
        request,
        "staff/rumours/list.html",
        {"rumours": items, "total": total, "page": page, "filters": {"status": chosen}, "labels": LABELS,
         "query": urlencode({"status": chosen} if chosen else {}), "done": done_message(request)},
    )  # fmt: skip


def _rumour_form(request: Request, values: dict, errors: dict, status_code: int = 200) -> Response:
    return render(
        request, "staff/rumours/form.html", {"values": values, "errors": errors, "labels": LABELS}, status_code
    )


@router.get("/staff/rumours/new", response_class=HTMLResponse)
def new_rumour(request: Request, user: CommunicationsUser) -> Response:
    return _rumour_form(request, {"language": settings.default_language, "risk": "medium", "report_count": "1"}, {})


@router.post("/staff/rumours/new", response_class=HTMLResponse)
def log_rumour(request: Request, user: CommunicationsUser, session: SessionDep, form: FormDep) -> Response:
    values = form_values(form)
    data, errors = parse_typed_form(RumourCreate, values, request, times=RUMOUR_TIMES)
    status_code = 422
    if data is not None:
        try:
            rumour = service.log_rumour(session=session, actor=user, data=data)
        except DomainError as refused:
            session.rollback()
            errors, status_code = errors_of(refused, request), refused.status_code
        else:
            return redirect(f"/staff/rumours/{rumour.id}?done=logged")
    return _rumour_form(request, values, errors, status_code)


def _rumour_values(rumour: Rumour) -> dict[str, str]:
    return {
        "last_seen": local_input_value(rumour.last_seen),
        "report_count": str(rumour.report_count),
        "risk": rumour.risk.value,
        "summary": rumour.summary,
        "channel": rumour.channel,
        "url": rumour.url or "",
        "status": rumour.status.value,
    }


def _verdict_values(rumour: Rumour) -> dict[str, str]:
    return {"verdict": rumour.verdict.value if rumour.verdict else "", "evidence": rumour.evidence,
            "response": rumour.response}  # fmt: skip


def _rumour_page(
    request: Request, session: Session, rumour: Rumour, failed: dict | None = None, status_code: int = 200
) -> Response:
    answer = session.get(Bulletin, rumour.bulletin_id) if rumour.bulletin_id else None
    return render(
        request,
        "staff/rumours/detail.html",
        {
            "rumour": rumour,
            "answer": answer,
            # A fact-check is drafted once there is a verdict, unless a live update already answers it.
            "can_draft": rumour.verdict is not None and (answer is None or answer.status == BulletinStatus.retracted),
            "names": _names(session, {rumour.created_by_id, rumour.verdict_by_id}),
            "edit": _rumour_values(rumour),
            "verdict_values": _verdict_values(rumour),
            "failed": failed or {},
            "done": done_message(request),
            "labels": LABELS,
        },
        status_code,
    )


@router.get("/staff/rumours/{rumour_id}", response_class=HTMLResponse)
def rumour_page(request: Request, rumour: CurrentRumour, session: SessionDep) -> Response:
    return _rumour_page(request, session, rumour)


def _rumour_action(
    request: Request,
    session: Session,
    rumour: Rumour,
    form: str,
    values: dict,
    parsed: tuple[Any, dict],
    act: Callable[[Any], Any],
    done: Callable[[Any], str],
) -> Response:
    return _action(
        request, session, form, values, parsed, act, done,
        lambda failed, status_code: _rumour_page(request, session, rumour, failed, status_code),
    )  # fmt: skip


@router.post("/staff/rumours/{rumour_id}/edit", response_class=HTMLResponse)
def update_rumour(
    request: Request, rumour: CurrentRumour, user: CommunicationsUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form)
    # What the form shows counts as sent: an emptied summary or address is cleared, an emptied channel or
    # time refused by the rules.
    sent = {name: values.get(name) for name in RUMOUR_EDITED if name in form}
    if "summary" in sent:
        sent["summary"] = sent["summary"] or ""
    parsed = parse_typed_form(RumourUpdate, sent, request, times=("last_seen",))
    act = partial(service.update_rumour, session=session, actor=user, rumour=rumour)
    return _rumour_action(
        request, session, rumour, "edit", values, parsed, lambda d: act(data=d),
        lambda r: f"/staff/rumours/{r.id}?done=saved",
    )  # fmt: skip


@router.post("/staff/rumours/{rumour_id}/verdict", response_class=HTMLResponse)
def record_verdict(
    request: Request, rumour: CurrentRumour, user: CommunicationsUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form)
    fields = {k: v for k, v in values.items() if k in ("verdict", "evidence", "response")}
    parsed = parse_typed_form(VerdictBody, fields, request)
    act = partial(service.record_verdict, session=session, actor=user, rumour=rumour)
    return _rumour_action(
        request, session, rumour, "verdict", values, parsed, lambda d: act(data=d),
        lambda r: f"/staff/rumours/{r.id}?done=verdict",
    )  # fmt: skip


@router.post("/staff/rumours/{rumour_id}/fact-check", response_class=HTMLResponse)
def draft_fact_check(
    request: Request, rumour: CurrentRumour, user: CommunicationsUser, session: SessionDep
) -> Response:
    area = settings.municipality_name if rumour.language == "bg" else settings.municipality_name_en
    act = partial(service.draft_fact_check, session=session, actor=user, rumour=rumour, area_desc=area)
    return _rumour_action(
        request, session, rumour, "fact-check", {}, (True, {}), lambda _d: act(),
        lambda b: f"/staff/bulletins/{b.id}?done=created",
    )  # fmt: skip
