"""The staff's memoranda pages: the list and its filters, drafting from a kind's declared variables, one
memorandum with its parties and the actions its status allows, and its PDFs (cookie login, the same files as
the API's).

Coordinators and administrators only. Issuing and signing go through `flows`, which render and store PDFs
outside write transactions: those routes are `async`, hold no session of their own, and read one only to show
the page again.
"""

from collections.abc import Callable
from datetime import date, timedelta
from functools import partial
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlmodel import Session, SQLModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from service.auth import CoordinatorUser, CurrentUser, check_csrf, logged_in_user
from service.config import settings
from service.db import Id, SessionDep, request_session
from service.errors import DomainError, Forbidden, InvalidFields, NotAuthenticated, NotFound
from service.i18n import LANGUAGE_LABELS, N_, gettext_for, language_of
from service.memoranda import archive, documents, flows, service
from service.memoranda.deps import CoordinatedMemorandum, load_coordinated
from service.memoranda.models import (
    AWAITING_SIGNATURES,
    KIND_LABELS,
    METHOD_LABELS,
    PARTY_STATUS_LABELS,
    STATUS_LABELS,
    Memorandum,
    MemorandumCreate,
    MemorandumStatus,
    MemorandumUpdate,
    ReasonBody,
    SignatureCreate,
    SignatureMethod,
)
from service.pagination import PageDep
from service.partners import service as partners
from service.partners.models import VERIFICATION_LABELS, Organisation, VerificationStatus
from service.web import FormDep, form_values, parse_form, redirect, render

router = APIRouter(dependencies=[Depends(check_csrf)], include_in_schema=False)

ORDER_LABELS = {
    "parallel": N_("In parallel: every party may sign at once"),
    "sequential": N_("In order: the partners in the order listed, then the municipality"),
}
LABELS = {
    "kinds": KIND_LABELS,
    "status": STATUS_LABELS,
    "party_status": PARTY_STATUS_LABELS,
    "methods": METHOD_LABELS,
    "languages": LANGUAGE_LABELS,
    "orders": ORDER_LABELS,
    "verification": VERIFICATION_LABELS,
}
DATE_FIELDS = ("signing_deadline", "valid_from", "valid_until")
# Organisations offered as parties and in the filter, by name; a municipality's registry is smaller than this.
ORGANISATIONS_SHOWN = 500
# The same limit as the API's upload of a scanned copy.
MAX_SCAN_BYTES = 20 * 1024 * 1024
SCAN_TOO_LARGE = N_("The scanned copy is larger than 20 MB.")
NOT_A_DATE = N_("Enter a date.")
CHOOSE_PARTNERS = N_("Choose at least one partner organisation.")
CHOOSE_OPTION = N_("Choose one of the options.")
DONE_MESSAGES = {
    "created": N_("The draft is saved. Check the preview, then issue it for signing."),
    "saved": N_("Saved."),
    "issued": N_("The memorandum is issued: its PDF is frozen and the parties are asked to sign."),
    "signed": N_("The signature is recorded."),
    "deadline": N_("The signing deadline is changed."),
    "cancelled": N_("The memorandum is cancelled."),
    "terminated": N_("The memorandum is terminated."),
    "renewed": N_("A renewal is drafted from the memorandum. Check it, then issue it."),
    "discarded": N_("The draft is discarded."),
}
# Refusals that are not about the form: they answer as on any other page (log in, 403, 404).
NOT_THE_FORMS_FAULT = (NotAuthenticated, Forbidden, NotFound)


class DeadlineForm(BaseModel):
    signing_deadline: date


def errors_of(error: DomainError, request: Request) -> dict[str, str]:
    """A refusal's messages by field, in the reader's language (each variable beside its own field)."""
    gettext = gettext_for(request)
    if isinstance(error, InvalidFields):
        return error.texts(gettext)
    return {error.field or "__all__": error.text(gettext)}


def done_message(request: Request) -> str | None:
    key = request.query_params.get("done")
    return DONE_MESSAGES.get(key) if key else None


def _organisations(session: Session) -> list[Organisation]:
    return partners.search(session=session, filters=partners.OrganisationFilter(), limit=ORGANISATIONS_SHOWN)[0]


# --- the list ------------------------------------------------------------------------------------


def _filters(
    status: str | None, organisation_id: str | None, template: str | None, expiring_before: str | None
) -> dict[str, Any]:
    """The list's filters; values a hand-edited URL got wrong are ignored rather than refused."""
    try:
        expiring = date.fromisoformat(expiring_before) if expiring_before else None
    except ValueError:
        expiring = None
    return {
        "status": MemorandumStatus(status) if status in MemorandumStatus.__members__ else None,
        "organisation_id": int(organisation_id) if organisation_id and organisation_id.isdigit() else None,
        "template": template if template in documents.KINDS else None,
        "expiring_before": expiring,
    }


@router.get("/staff/memoranda", response_class=HTMLResponse)
def memoranda(
    request: Request,
    user: CoordinatorUser,
    session: SessionDep,
    page: PageDep,
    status: Annotated[str | None, Query(max_length=40)] = None,
    organisation_id: Annotated[str | None, Query(max_length=12)] = None,
    template: Annotated[str | None, Query(max_length=40)] = None,
    expiring_before: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    filters = _filters(status, organisation_id, template, expiring_before)
    items, total = service.list_memoranda(session=session, **filters, limit=page.limit, offset=page.offset)
    query = urlencode({k: (v.isoformat() if isinstance(v, date) else v) for k, v in filters.items() if v is not None})
    return render(
        request,
        "staff/memoranda/list.html",
        {
            "memoranda": items,
            "parties": service.parties_by_memorandum(session=session, memoranda=items),
            "total": total,
            "page": page,
            "filters": filters,
            "query": query,
            "organisations": _organisations(session),
            "labels": LABELS,
            "done": done_message(request),
        },
    )


# --- drafting ------------------------------------------------------------------------------------


def variable_fields(kind: str, language: str) -> list[dict[str, Any]]:
    """The kind's declared variables as the form shows them: label and help in the reader's language."""
    fields = []
    for spec in documents.declaration(kind):
        limit = spec.max_length or (
            documents.MULTILINE_MAX_LENGTH if spec.type == "multiline" else documents.TEXT_MAX_LENGTH
        )
        fields.append(
            {
                "name": f"variables.{spec.name}",
                "id": f"var-{spec.name}",
                "type": spec.type,
                "required": spec.required,
                "label": spec.label(language),
                "help": spec.help(language),
                "options": [(option.value, option.label(language)) for option in spec.options],
                "min": spec.minimum,
                "max": spec.maximum,
                "max_length": limit,
            }
        )
    return fields


def _as_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _fresh_values(language: str) -> dict[str, Any]:
    today = service.today()
    return {
        "language": language,
        "signing_order": "parallel",
        "partner_ids": [],
        "signing_deadline": (today + timedelta(days=14)).isoformat(),
        "valid_from": today.isoformat(),
        "valid_until": (today + timedelta(days=365)).isoformat(),
    }


def _with_defaults(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with each variable's declared default where the form has none yet."""
    defaults = {
        f"variables.{spec.name}": _as_text(spec.default)
        for spec in documents.declaration(kind)
        if spec.default is not None
    }
    return {**defaults, **values}


def _draft_values(session: Session, memorandum: Memorandum) -> dict[str, Any]:
    """A draft as its form shows it."""
    parties = service.parties_of(session=session, memorandum=memorandum)
    return {
        "template": memorandum.template,
        "language": memorandum.language.value,
        "partner_ids": [str(p.organisation_id) for p in parties if not p.is_municipality],
        "signing_order": "sequential" if memorandum.sequential else "parallel",
        **{name: _as_text(getattr(memorandum, name)) for name in DATE_FIELDS},
        **{f"variables.{name}": _as_text(value) for name, value in memorandum.variables.items() if value is not None},
    }


def _form_page(
    request: Request,
    session: Session,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    *,
    memorandum: Memorandum | None = None,
    status_code: int = 200,
) -> Response:
    """The drafting form: step 1 (kind, parties, dates) until a kind is chosen, then the whole form with the
    kind's variables. Editing a draft is the whole form, its kind fixed."""
    kind = memorandum.template if memorandum else values.get("template")
    kind = kind if kind in documents.KINDS else None
    chosen = {str(i) for i in values.get("partner_ids", [])}
    organisations = [
        o
        for o in _organisations(session)
        if o.verification_status != VerificationStatus.suspended or str(o.id) in chosen
    ]
    step_one = {k: v for k, v in values.items() if k in ("language", "signing_order", *DATE_FIELDS) and v}
    return render(
        request,
        "staff/memoranda/form.html",
        {
            "memorandum": memorandum,
            "kind": kind,
            "fields": variable_fields(kind, language_of(request)) if kind else [],
            "organisations": organisations,
            "chosen": chosen,
            "values": values,
            "errors": errors or {},
            "done": done_message(request),
            "change_kind": "/staff/memoranda/new?" + urlencode({**step_one, "partner_ids": sorted(chosen)}, doseq=True),
            "labels": LABELS,
        },
        status_code,
    )


def _draft_input(values: dict[str, Any], kind: str) -> dict[str, Any]:
    """What the form's fields say, shaped for MemorandumCreate/MemorandumUpdate."""
    variables = {
        spec.name: values[f"variables.{spec.name}"]
        for spec in documents.declaration(kind)
        if f"variables.{spec.name}" in values
    }
    return {
        "partner_ids": values.get("partner_ids", []),
        "variables": variables,
        "sequential": values.get("signing_order") == "sequential",
        **{name: values[name] for name in DATE_FIELDS if values.get(name)},
    }


def parse_draft(
    schema: type[SQLModel], data: dict[str, Any], kind: str, request: Request
) -> tuple[Any, dict[str, str]]:
    """The draft's schema from the form, or None and every message at once: the fields' and the variables'."""
    gettext = gettext_for(request)
    parsed, errors = parse_form(schema, data, gettext)
    if "partner_ids" in errors and not data.get("partner_ids"):
        errors["partner_ids"] = gettext(CHOOSE_PARTNERS)
    for name in DATE_FIELDS:
        if name in errors and data.get(name):
            errors[name] = gettext(NOT_A_DATE)
    _clean, wrong = documents.validate_variables(kind, data["variables"])
    errors.update({f"variables.{name}": gettext(message) for name, message in wrong.items()})
    return (None if errors else parsed), errors


@router.get("/staff/memoranda/new", response_class=HTMLResponse)
def new_memorandum(request: Request, user: CoordinatorUser, session: SessionDep) -> Response:
    chosen = form_values(request.query_params, lists=("partner_ids",))
    values = {**_fresh_values(settings.default_language), **chosen}
    errors = {}
    kind = values.get("template")
    if kind in documents.KINDS:
        values = _with_defaults(kind, values)
    elif kind is not None:
        errors["template"] = gettext_for(request)(CHOOSE_OPTION)
    return _form_page(request, session, values, errors)


@router.post("/staff/memoranda/new", response_class=HTMLResponse)
def create_memorandum(request: Request, user: CoordinatorUser, session: SessionDep, form: FormDep) -> Response:
    values = form_values(form, lists=("partner_ids",))
    kind = values.get("template")
    if kind not in documents.KINDS:
        return _form_page(request, session, values, {"template": gettext_for(request)(CHOOSE_OPTION)}, status_code=422)
    data = {"template": kind, "language": values.get("language"), **_draft_input(values, kind)}
    parsed, errors = parse_draft(MemorandumCreate, data, kind, request)
    if parsed is not None:
        try:
            memorandum = service.create(session=session, actor=user, data=parsed)
        except DomainError as error:
            session.rollback()
            errors = errors_of(error, request)
        else:
            return redirect(f"/staff/memoranda/{memorandum.id}?done=created")
    return _form_page(request, session, values, errors, status_code=422)


@router.get("/staff/memoranda/{memorandum_id}/edit", response_class=HTMLResponse)
def edit_memorandum(request: Request, memorandum: CoordinatedMemorandum, session: SessionDep) -> Response:
    if memorandum.status != MemorandumStatus.draft:
        return redirect(f"/staff/memoranda/{memorandum.id}")
    values = _draft_values(session, memorandum)
    # A renewal copies variables that today's declaration may no longer accept: shown at once, to fix.
    # (A name the declaration dropped has no field: saving the form leaves it out.)
    _clean, wrong = documents.validate_variables(memorandum.template, memorandum.variables)
    declared = {spec.name for spec in documents.declaration(memorandum.template)}
    gettext = gettext_for(request)
    errors = {f"variables.{name}": gettext(message) for name, message in wrong.items() if name in declared}
    return _form_page(request, session, values, errors, memorandum=memorandum)


@router.post("/staff/memoranda/{memorandum_id}/edit", response_class=HTMLResponse)
def update_memorandum(
    request: Request, memorandum: CoordinatedMemorandum, user: CurrentUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form, lists=("partner_ids",))
    values["template"] = memorandum.template
    parsed, errors = parse_draft(
        MemorandumUpdate, _draft_input(values, memorandum.template), memorandum.template, request
    )
    if parsed is not None:
        try:
            service.update(session=session, actor=user, memorandum=memorandum, data=parsed)
        except DomainError as error:
            session.rollback()
            errors = errors_of(error, request)
        else:
            return redirect(f"/staff/memoranda/{memorandum.id}?done=saved")
    return _form_page(request, session, values, errors, memorandum=memorandum, status_code=422)


# --- one memorandum ------------------------------------------------------------------------------


def forms_shown(memorandum: Memorandum, parties: list) -> set[str]:
    """The action forms a memorandum's page shows in its status (a refusal of any other is shown on top)."""
    status = memorandum.status
    if status == MemorandumStatus.draft:
        return {"issue", "discard"}
    shown = set()
    if status in AWAITING_SIGNATURES:
        unsigned = [p for p in parties if p.signed_at is None and p.declined_at is None]
        shown |= {"deadline", "cancel", *(["scan"] if unsigned else [])}
        shown |= {"sign"} if any(p.is_municipality for p in unsigned) else set()
    if status == MemorandumStatus.active:
        shown.add("terminate")
    if status in (
        MemorandumStatus.active,
        MemorandumStatus.expired,
        MemorandumStatus.declined,
        MemorandumStatus.cancelled,
    ):
        shown.add("renew")
    return shown


def _detail(
    request: Request, session: Session, memorandum: Memorandum, context: dict | None = None, status_code: int = 200
) -> Response:
    parties = service.parties_of(session=session, memorandum=memorandum)
    municipality = next(p for p in parties if p.is_municipality)
    successor_id = service.superseded_by(session=session, memoranda=[memorandum]).get(memorandum.id)
    return render(
        request,
        "staff/memoranda/detail.html",
        {
            "memorandum": memorandum,
            "title": gettext_for(request)(KIND_LABELS[memorandum.template]),
            "parties": parties,
            "municipality_party": municipality,
            "unsigned": [p for p in parties if p.signed_at is None and p.declined_at is None],
            "awaiting": memorandum.status in AWAITING_SIGNATURES,
            "forms_shown": forms_shown(memorandum, parties),
            "predecessor": session.get(Memorandum, memorandum.supersedes_id) if memorandum.supersedes_id else None,
            "successor": session.get(Memorandum, successor_id) if successor_id else None,
            "sign_values": {
                "signer_name": municipality.representative_name,
                "signer_title": municipality.representative_title,
            },
            "failed": {},
            "done": done_message(request),
            "labels": LABELS,
            **(context or {}),
        },
        status_code,
    )


@router.get("/staff/memoranda/{memorandum_id}", response_class=HTMLResponse)
def memorandum_page(request: Request, memorandum: CoordinatedMemorandum, session: SessionDep) -> Response:
    return _detail(request, session, memorandum)


def _failed(form: str, values: dict, errors: dict) -> dict[str, Any]:
    return {"failed": {"form": form, "input": values, "errors": errors}}


async def _detail_again(
    request: Request, memorandum_id: int, form: str, values: dict, errors: dict, status_code: int
) -> Response:
    """The page shown again after an `async` action was refused, read in a session of its own."""

    def show(reader: Session) -> Response:
        memorandum = load_coordinated(reader, logged_in_user(request, reader), memorandum_id)
        return _detail(request, reader, memorandum, _failed(form, values, errors), status_code)

    async with request_session(request, write=False) as reader:
        return await run_in_threadpool(show, reader)


def _action(
    request: Request,
    session: Session,
    memorandum: Memorandum,
    form: str,
    values: dict,
    parsed: tuple[Any, dict],
    act: Callable[[Any], Any],
    done: Callable[[Any], str],
) -> Response:
    """Runs `act(data)` for a parsed form; bad input or a refusal shows the page again, the message beside
    that form and the input kept."""
    data, errors = parsed
    error = None
    if data is not None:
        try:
            result = act(data)
        except DomainError as refused:
            if isinstance(refused, NOT_THE_FORMS_FAULT):
                raise
            error, errors = refused, errors_of(refused, request)
        else:
            return redirect(done(result))
    session.rollback()  # let go of the memorandum's lock before the page is read again
    return _detail(request, session, memorandum, _failed(form, values, errors), error.status_code if error else 422)


@router.post("/staff/memoranda/{memorandum_id}/issue", response_class=HTMLResponse)
async def issue_memorandum(memorandum_id: Id, request: Request) -> Response:
    try:
        await flows.issue(request, memorandum_id)
    except DomainError as error:
        if isinstance(error, NOT_THE_FORMS_FAULT):
            raise
        return await _detail_again(request, memorandum_id, "issue", {}, errors_of(error, request), error.status_code)
    return redirect(f"/staff/memoranda/{memorandum_id}?done=issued")


async def sign_with_form(
    request: Request, memorandum_id: int, organisation_id: int | None, values: dict[str, Any]
) -> tuple[dict[str, str], int] | None:
    """Signs with the name and title of a page's form (staff for the municipality, a partner for their
    organisation): None when signed, else the errors to show beside the form and the status to answer."""
    data, errors = parse_form(
        SignatureCreate, {k: v for k, v in values.items() if k in ("signer_name", "signer_title")}, gettext_for(request)
    )
    if data is None:
        return errors, 422
    try:
        await flows.sign(
            request,
            memorandum_id,
            organisation_id=organisation_id,
            signer_name=data.signer_name,
            signer_title=data.signer_title,
        )
    except DomainError as error:
        if isinstance(error, NOT_THE_FORMS_FAULT):
            raise
        return errors_of(error, request), error.status_code
    return None


@router.post("/staff/memoranda/{memorandum_id}/sign", response_class=HTMLResponse)
async def sign_for_municipality(memorandum_id: Id, request: Request, form: FormDep) -> Response:
    values = form_values(form)
    refused = await sign_with_form(request, memorandum_id, None, values)
    if refused is None:
        return redirect(f"/staff/memoranda/{memorandum_id}?done=signed#parties")
    return await _detail_again(request, memorandum_id, "sign", values, *refused)


def _party_of(value: str | None) -> tuple[bool, int | None]:
    """The scan form's party: ("municipality" → us) or an organisation's id; False when it is neither."""
    if value == "municipality":
        return True, None
    if value and value.isdigit() and 0 < int(value) < 2**31:
        return True, int(value)
    return False, None


@router.post("/staff/memoranda/{memorandum_id}/scan", response_class=HTMLResponse)
async def record_scanned_copy(memorandum_id: Id, request: Request, form: FormDep) -> Response:
    """A party's wet-ink signature, recorded with the scanned copy (a multipart form; its SHA-256 is kept)."""
    gettext = gettext_for(request)
    values = form_values(form)
    data, errors = parse_form(
        SignatureCreate, {k: v for k, v in values.items() if k in ("signer_name", "signer_title")}, gettext
    )
    known, organisation_id = _party_of(values.get("party"))
    if not known:
        errors["party"] = gettext(CHOOSE_OPTION)
    upload = form.get("scan")
    scan = await upload.read(MAX_SCAN_BYTES + 1) if isinstance(upload, UploadFile) and upload.filename else b""
    if len(scan) > MAX_SCAN_BYTES:
        errors["scan"] = gettext(SCAN_TOO_LARGE)
    status_code = 422
    if data is not None and not errors:
        try:
            await flows.sign(
                request,
                memorandum_id,
                organisation_id=organisation_id,
                signer_name=data.signer_name,
                signer_title=data.signer_title,
                method=SignatureMethod.upload,
                scan=scan,
            )
        except DomainError as error:
            if isinstance(error, NOT_THE_FORMS_FAULT):
                raise
            errors, status_code = errors_of(error, request), error.status_code
            if "organisation_id" in errors:
                errors["party"] = errors.pop("organisation_id")
        else:
            return redirect(f"/staff/memoranda/{memorandum_id}?done=signed#parties")
    return await _detail_again(request, memorandum_id, "scan", values, errors, status_code)


@router.post("/staff/memoranda/{memorandum_id}/deadline", response_class=HTMLResponse)
def change_deadline(
    request: Request, memorandum: CoordinatedMemorandum, user: CurrentUser, session: SessionDep, form: FormDep
) -> Response:
    values = form_values(form)
    data, errors = parse_form(DeadlineForm, values, gettext_for(request))
    if "signing_deadline" in errors and values.get("signing_deadline"):
        errors["signing_deadline"] = gettext_for(request)(NOT_A_DATE)
    act = partial(service.set_signing_deadline, session=session, actor=user, memorandum=memorandum)
    done = f"/staff/memoranda/{memorandum.id}?done=deadline"
    return _action(
        request, session, memorandum, "deadline", values, (data, errors),
        lambda d: act(deadline=d.signing_deadline), lambda _m: done,
    )  # fmt: skip


def _reason_action(
    request: Request, session: Session, memorandum: Memorandum, form_data: Any, name: str, act: Callable, done: str
) -> Response:
    values = form_values(form_data)
    parsed = parse_form(ReasonBody, values, gettext_for(request))
    target = f"/staff/memoranda/{memorandum.id}?done={done}"
    return _action(
        request, session, memorandum, name, values, parsed, lambda d: act(reason=d.reason), lambda _m: target
    )


@router.post("/staff/memoranda/{memorandum_id}/cancel", response_class=HTMLResponse)
def cancel_memorandum(
    request: Request, memorandum: CoordinatedMemorandum, user: CurrentUser, session: SessionDep, form: FormDep
) -> Response:
    act = partial(service.cancel, session=session, actor=user, memorandum=memorandum)
    return _reason_action(request, session, memorandum, form, "cancel", act, "cancelled")


@router.post("/staff/memoranda/{memorandum_id}/terminate", response_class=HTMLResponse)
def terminate_memorandum(
    request: Request, memorandum: CoordinatedMemorandum, user: CurrentUser, session: SessionDep, form: FormDep
) -> Response:
    act = partial(service.terminate, session=session, actor=user, memorandum=memorandum)
    return _reason_action(request, session, memorandum, form, "terminate", act, "terminated")


@router.post("/staff/memoranda/{memorandum_id}/renew", response_class=HTMLResponse)
def renew_memorandum(
    request: Request, memorandum: CoordinatedMemorandum, user: CurrentUser, session: SessionDep
) -> Response:
    act = partial(service.renew, session=session, actor=user, memorandum=memorandum)
    return _action(
        request, session, memorandum, "renew", {}, (True, {}),
        lambda _d: act(), lambda renewal: f"/staff/memoranda/{renewal.id}/edit?done=renewed",
    )  # fmt: skip


@router.post("/staff/memoranda/{memorandum_id}/discard", response_class=HTMLResponse)
def discard_memorandum(
    request: Request, memorandum: CoordinatedMemorandum, user: CurrentUser, session: SessionDep
) -> Response:
    act = partial(service.discard, session=session, actor=user, memorandum=memorandum)
    return _action(
        request,
        session,
        memorandum,
        "discard",
        {},
        (True, {}),
        lambda _d: act(),
        lambda _r: "/staff/memoranda?done=discarded",
    )


# --- the PDFs ------------------------------------------------------------------------------------


def pdf_response(data: bytes, filename: str) -> Response:
    return Response(
        data,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{filename}"', "Cache-Control": "private, no-store"},
    )


def archived_pdf(memorandum: Memorandum, variant: str | None) -> tuple[bytes, str]:
    """An issued memorandum's archived PDF: the signed one (the default once there is one) or the issued one."""
    digest = memorandum.sha256
    if variant == "signed" or (variant is None and memorandum.signed_sha256):
        digest = memorandum.signed_sha256
        if digest is None:
            raise NotFound(N_("This memorandum has no signed PDF yet."))
    kind = "signed" if digest == memorandum.signed_sha256 else "issued"
    return archive.load(digest), f"memorandum-{memorandum.verification_code}-{kind}.pdf"


@router.get("/staff/memoranda/{memorandum_id}/pdf")
def memorandum_pdf(
    memorandum: CoordinatedMemorandum, session: SessionDep, variant: Literal["issued", "signed"] | None = None
) -> Response:
    """A draft's preview (with the DRAFT watermark), or the issued or the signed PDF."""
    if memorandum.status == MemorandumStatus.draft:
        data = service.render(session=session, memorandum=memorandum, draft=True)
        return pdf_response(data, f"memorandum-{memorandum.id}-draft.pdf")
    return pdf_response(*archived_pdf(memorandum, variant))
