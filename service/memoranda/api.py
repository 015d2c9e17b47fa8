"""JSON routes of memoranda (`/api/v1/memoranda`, `/api/v1/memorandum-templates`)."""

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from service.auth import CoordinatorUser, CurrentUser
from service.db import Id, SessionDep, request_session, session_scope
from service.errors import API_ERRORS, Conflict, Forbidden, Invalid, NotFound
from service.i18n import N_, gettext_for, language_of
from service.memoranda import archive, documents, flows, service
from service.memoranda.deps import (
    CoordinatedMemorandum,
    VisibleMemorandum,
    coordinates,
    require_coordinator,
)
from service.memoranda.models import (
    AWAITING_SIGNATURES,
    KIND_LABELS,
    DeclineBody,
    Language,
    Memorandum,
    MemorandumCreate,
    MemorandumPublic,
    MemorandumStatus,
    MemorandumUpdate,
    PartyPublic,
    PersonName,
    ReasonBody,
    SignatureCreate,
    SignatureMethod,
    TemplatePublic,
    VariablePublic,
)
from service.pagination import Page, PageDep
from service.users.models import Role, User

router = APIRouter(prefix="/api/v1", tags=["memoranda"], responses=API_ERRORS)
MAX_SCAN_BYTES = 20 * 1024 * 1024


def memoranda_public(session: Session, memoranda: list[Memorandum]) -> list[MemorandumPublic]:
    parties = service.parties_by_memorandum(session=session, memoranda=memoranda)
    successors = service.superseded_by(session=session, memoranda=memoranda)
    answers = []
    for memorandum in memoranda:
        own = parties[memorandum.id]
        issued = memorandum.status != MemorandumStatus.draft
        answers.append(
            MemorandumPublic.model_validate(
                {
                    **memorandum.model_dump(),
                    "partner_ids": [p.organisation_id for p in own if not p.is_municipality],
                    "parties": [PartyPublic.model_validate({**p.model_dump(), "status": p.status}) for p in own],
                    "verification_code": memorandum.verification_code if issued else None,
                    "verify_url": service.verify_url(memorandum.verification_code) if issued else None,
                    "superseded_by_id": successors.get(memorandum.id),
                }
            )
        )
    return answers


def _one(session: Session, memorandum: Memorandum) -> MemorandumPublic:
    return memoranda_public(session, [memorandum])[0]


async def _answer(request: Request, memorandum_id: int) -> MemorandumPublic:
    async with request_session(request, write=False) as reader:
        return await run_in_threadpool(lambda: _one(reader, service.get(session=reader, memorandum_id=memorandum_id)))


# --- templates -------------------------------------------------------------------------------------------


@router.get("/memorandum-templates", response_model=list[TemplatePublic])
def list_templates(request: Request, user: CurrentUser, language: Language | None = None) -> list[TemplatePublic]:
    """The memorandum kinds in both languages, each with its declared variables (labels in the reader's
    language) and its version, the SHA-256 of its source."""
    require_coordinator(user)
    _ = gettext_for(request)
    reader = language_of(request)
    answers = []
    for kind in documents.KINDS:
        specs = documents.declaration(kind)
        for lang in [language] if language else list(Language):
            answers.append(
                TemplatePublic(
                    template=kind,
                    language=lang,
                    title=_(KIND_LABELS[kind]),
                    version=documents.template_version(kind, lang.value),
                    variables=[
                        VariablePublic(
                            name=spec.name,
                            type=spec.type,
                            required=spec.required,
                            label=spec.label(reader),
                            help=spec.help(reader),
                            default=spec.default,
                            options=[{"value": o.value, "label": o.label(reader)} for o in spec.options],
                        )
                        for spec in specs
                    ],
                )
            )
    return answers


# --- memoranda -------------------------------------------------------------------------------------------


@router.get("/memoranda", response_model=Page[MemorandumPublic])
def list_memoranda(
    user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    status: MemorandumStatus | None = None,
    organisation_id: Id | None = None,
    template: str | None = None,
    expiring_before: date | None = None,
) -> Page:
    """Memoranda, the newest first: all for coordinators, a partner's own (once issued) for a partner user."""
    own = None
    if not coordinates(user):
        if not user.has_role(Role.partner) or user.organisation_id is None:
            raise Forbidden(N_("Your role does not allow this."))
        own = user.organisation_id
    items, total = service.list_memoranda(
        session=session,
        status=status,
        organisation_id=organisation_id,
        template=template,
        expiring_before=expiring_before,
        party_organisation_id=own,
        limit=page.limit,
        offset=page.offset,
    )
    return Page(items=memoranda_public(session, items), total=total, limit=page.limit, offset=page.offset)


@router.post("/memoranda", status_code=status.HTTP_201_CREATED, response_model=MemorandumPublic)
def create_memorandum(data: MemorandumCreate, user: CoordinatorUser, session: SessionDep) -> MemorandumPublic:
    """A new draft: the template, its language, the partners and the filled variables (422 per variable)."""
    return _one(session, service.create(session=session, actor=user, data=data))


@router.get("/memoranda/{memorandum_id}", response_model=MemorandumPublic)
def get_memorandum(memorandum: VisibleMemorandum, session: SessionDep) -> MemorandumPublic:
    """One memorandum with its parties and their signatures."""
    return _one(session, memorandum)


@router.patch("/memoranda/{memorandum_id}", response_model=MemorandumPublic)
def update_memorandum(
    data: MemorandumUpdate, memorandum: CoordinatedMemorandum, user: CurrentUser, session: SessionDep
) -> MemorandumPublic:
    """Change a draft; of an issued memorandum awaiting signatures only `signing_deadline` (to extend it)."""
    if memorandum.status in AWAITING_SIGNATURES:
        changes = data.model_dump(exclude_unset=True)
        if set(changes) != {"signing_deadline"}:
            raise Conflict(N_("Of an issued memorandum only the signing deadline can change."))
        if changes["signing_deadline"] is None:
            raise Invalid(N_("Required."), field="signing_deadline")
        updated = service.set_signing_deadline(
            session=session, actor=user, memorandum=memorandum, deadline=changes["signing_deadline"]
        )
    else:
        updated = service.update(session=session, actor=user, memorandum=memorandum, data=data)
    return _one(session, updated)


@router.delete("/memoranda/{memorandum_id}", status_code=status.HTTP_204_NO_CONTENT)
def discard_memorandum(memorandum: CoordinatedMemorandum, user: CurrentUser, session: SessionDep) -> Response:
    """Discard a draft."""
    service.discard(session=session, actor=user, memorandum=memorandum)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/memoranda/{memorandum_id}/pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "The PDF."}},
)
def memorandum_pdf(
    request: Request,
    memorandum: VisibleMemorandum,
    user: CurrentUser,
    session: SessionDep,
    variant: Literal["issued", "signed"] | None = None,
) -> Response:
    """The PDF: a draft's preview (DRAFT watermark), the issued document, or the signed final one (the
    default once there is one). A partner opening it marks their party as having seen it."""
    if memorandum.status == MemorandumStatus.draft:
        data = service.render(session=session, memorandum=memorandum, draft=True)
        name = f"memorandum-{memorandum.id}-draft.pdf"
    else:
        digest = memorandum.sha256
        if variant == "signed" or (variant is None and memorandum.signed_sha256):
            digest = memorandum.signed_sha256
            if digest is None:
                raise NotFound(N_("This memorandum has no signed PDF yet."))
        data = archive.load(digest)
        kind = "signed" if digest == memorandum.signed_sha256 else "issued"
        name = f"memorandum-{memorandum.verification_code}-{kind}.pdf"
        if not coordinates(user):
            _mark_viewed(request, user, memorandum.id)
    return Response(
        data,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}"', "Cache-Control": "private, no-store"},
    )


def _mark_viewed(request: Request, user: User, memorandum_id: int) -> None:
    # A GET reads through a plain reader; the one write it makes goes through its own short writer.
    with session_scope(request.app.state.engine, write=True) as writer:
        service.mark_viewed(
            session=writer, actor=user, memorandum=service.get(session=writer, memorandum_id=memorandum_id)
        )


@router.post("/memoranda/{memorandum_id}/issue", response_model=MemorandumPublic)
async def issue_memorandum(memorandum_id: Id, request: Request) -> MemorandumPublic:
    """Issue a draft: its PDF is rendered once and archived under its SHA-256; the parties are asked to sign."""
    await flows.issue(request, memorandum_id)
    return await _answer(request, memorandum_id)


@router.post("/memoranda/{memorandum_id}/signatures", response_model=MemorandumPublic)
async def sign_memorandum(memorandum_id: Id, data: SignatureCreate, request: Request) -> MemorandumPublic:
    """Sign as a party: a partner user for their own organisation; staff for the municipality (or, naming
    `organisation_id`, recording a party's signature). The last signature puts the memorandum in force."""
    await flows.sign(
        request,
        memorandum_id,
        organisation_id=data.organisation_id,
        signer_name=data.signer_name,
        signer_title=data.signer_title,
    )
    return await _answer(request, memorandum_id)


@router.post("/memoranda/{memorandum_id}/signatures/scan", response_model=MemorandumPublic)
async def record_scanned_signature(
    memorandum_id: Id,
    request: Request,
    signer_name: Annotated[PersonName, Form()],
    signer_title: Annotated[PersonName, Form()],
    scan: Annotated[UploadFile, File(description="The scanned, signed copy (PDF).")],
    organisation_id: Annotated[Id | None, Form()] = None,
) -> MemorandumPublic:
    """Staff record a party's wet-ink signature by uploading the scanned copy (its SHA-256 is kept)."""
    data = await scan.read(MAX_SCAN_BYTES + 1)
    if len(data) > MAX_SCAN_BYTES:
        raise Invalid(N_("The scanned copy is larger than 20 MB."), field="scan")
    await flows.sign(
        request,
        memorandum_id,
        organisation_id=organisation_id,
        signer_name=signer_name,
        signer_title=signer_title,
        method=SignatureMethod.upload,
        scan=data,
    )
    return await _answer(request, memorandum_id)


@router.post("/memoranda/{memorandum_id}/decline", response_model=MemorandumPublic)
def decline_memorandum(
    data: DeclineBody, memorandum: VisibleMemorandum, user: CurrentUser, session: SessionDep
) -> MemorandumPublic:
    """A party declines to sign, with the reason."""
    declined = service.decline(
        session=session, actor=user, memorandum=memorandum, organisation_id=data.organisation_id, reason=data.reason
    )
    return _one(session, declined)


@router.post("/memoranda/{memorandum_id}/cancel", response_model=MemorandumPublic)
def cancel_memorandum(
    data: ReasonBody, memorandum: CoordinatedMemorandum, user: CurrentUser, session: SessionDep
) -> MemorandumPublic:
    """Withdraw an issued memorandum before every party has signed."""
    return _one(session, service.cancel(session=session, actor=user, memorandum=memorandum, reason=data.reason))


@router.post("/memoranda/{memorandum_id}/terminate", response_model=MemorandumPublic)
def terminate_memorandum(
    data: ReasonBody, memorandum: CoordinatedMemorandum, user: CurrentUser, session: SessionDep
) -> MemorandumPublic:
    """End a memorandum in force early, with the reason."""
    return _one(session, service.terminate(session=session, actor=user, memorandum=memorandum, reason=data.reason))


@router.post("/memoranda/{memorandum_id}/renew", status_code=status.HTTP_201_CREATED, response_model=MemorandumPublic)
def renew_memorandum(memorandum: CoordinatedMemorandum, user: CurrentUser, session: SessionDep) -> MemorandumPublic:
    """A new draft prefilled from this memorandum; it supersedes this one once in force."""
    return _one(session, service.renew(session=session, actor=user, memorandum=memorandum))
