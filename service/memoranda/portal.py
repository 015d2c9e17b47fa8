"""The partner portal's memoranda: those the organisation is a party to (awaiting its signature first), each
with its PDF, and signing or declining it.

Only a partner user acting for an organisation comes in (403 for anyone else); a draft and another
organisation's memorandum are the same 404 as one that never existed. Signing goes through `flows` (the last
signature makes the final PDF): that route is `async` and holds no session of its own.
"""

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from service.auth import CurrentUser, check_csrf, logged_in_user
from service.db import Id, SessionDep, request_session, session_scope
from service.errors import DomainError, NotFound
from service.i18n import N_, gettext_for
from service.memoranda import service
from service.memoranda.deps import is_party, load_visible
from service.memoranda.models import (
    AWAITING_SIGNATURES,
    KIND_LABELS,
    METHOD_LABELS,
    PARTY_STATUS_LABELS,
    STATUS_LABELS,
    DeclineBody,
    Memorandum,
    MemorandumParty,
    MemorandumStatus,
)
from service.memoranda.pages import NOT_THE_FORMS_FAULT, archived_pdf, errors_of, pdf_response, sign_with_form
from service.memoranda.service import NO_SUCH_MEMORANDUM
from service.pagination import PageDep
from service.partners.models import Organisation
from service.partners.pages import OwnOrganisation, own_organisation
from service.users.models import User
from service.web import FormDep, form_values, parse_form, redirect, render

router = APIRouter(dependencies=[Depends(check_csrf)], include_in_schema=False)

LABELS = {"kinds": KIND_LABELS, "status": STATUS_LABELS, "party_status": PARTY_STATUS_LABELS, "methods": METHOD_LABELS}
# More than this many memoranda awaiting one organisation's signature is not a list anyone reads at once.
AWAITING_SHOWN = 100
DONE_MESSAGES = {
    "signed": N_("Your signature is recorded. Thank you."),
    "declined": N_("You declined to sign. The crisis staff are told, with your reason."),
}


def own_memorandum(session: Session, user: User, organisation: Organisation, memorandum_id: int) -> Memorandum:
    """The memorandum if the organisation is a party to it and it was issued; else 404."""
    memorandum = load_visible(session, user, memorandum_id)
    if not is_party(session, memorandum, organisation.id):
        raise NotFound(NO_SUCH_MEMORANDUM)
    return memorandum


def own_party(parties: list[MemorandumParty], organisation_id: int) -> MemorandumParty:
    return next(p for p in parties if p.organisation_id == organisation_id)


def may_sign(memorandum: Memorandum, parties: list[MemorandumParty], party: MemorandumParty) -> bool:
    """Whether the party can sign now: still awaited, and (in order) every earlier party has signed."""
    if memorandum.status not in AWAITING_SIGNATURES or party.signed_at or party.declined_at:
        return False
    return not memorandum.sequential or all(p.signed_at for p in parties if p.position < party.position)


# --- the list ------------------------------------------------------------------------------------


def _awaiting(session: Session, org: Organisation) -> list[Memorandum]:
    """The organisation's memoranda that still wait for its signature, the nearest deadline first."""
    found: list[Memorandum] = []
    for status in (MemorandumStatus.issued, MemorandumStatus.partially_signed):
        found += service.list_memoranda(
            session=session, status=status, party_organisation_id=org.id, limit=AWAITING_SHOWN
        )[0]
    parties = service.parties_by_memorandum(session=session, memoranda=found)
    waiting = [m for m in found if own_party(parties[m.id], org.id).status in ("pending", "viewed")]
    return sorted(waiting, key=lambda m: (m.signing_deadline, m.id))[:AWAITING_SHOWN]


@router.get("/portal/memoranda", response_class=HTMLResponse)
def memoranda(request: Request, org: OwnOrganisation, session: SessionDep, page: PageDep) -> Response:
    items, total = service.list_memoranda(
        session=session, party_organisation_id=org.id, limit=page.limit, offset=page.offset
    )
    awaiting = _awaiting(session, org)
    parties = service.parties_by_memorandum(session=session, memoranda=[*awaiting, *items])
    return render(
        request,
        "portal/memoranda/list.html",
        {
            "org": org,
            "awaiting": awaiting,
            "memoranda": items,
            "total": total,
            "page": page,
            "own": {m_id: own_party(ps, org.id) for m_id, ps in parties.items()},
            "parties": parties,
            "labels": LABELS,
        },
    )


# --- one memorandum ------------------------------------------------------------------------------


def _detail(
    request: Request,
    session: Session,
    user: User,
    org: Organisation,
    memorandum: Memorandum,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    parties = service.parties_of(session=session, memorandum=memorandum)
    party = own_party(parties, org.id)
    # The person's own name, and the title the registry gives them when they are its contact.
    title = party.representative_title if party.representative_name == user.full_name else ""
    key = request.query_params.get("done")
    return render(
        request,
        "portal/memoranda/detail.html",
        {
            "org": org,
            "memorandum": memorandum,
            "title": gettext_for(request)(KIND_LABELS[memorandum.template]),
            "parties": parties,
            "party": party,
            "can_sign": may_sign(memorandum, parties, party),
            "can_decline": memorandum.status in AWAITING_SIGNATURES and party.status in ("pending", "viewed"),
            "sign_values": {"signer_name": user.full_name, "signer_title": title},
            "failed": {},
            "done": DONE_MESSAGES.get(key) if key else None,
            "labels": LABELS,
            **(context or {}),
        },
        status_code,
    )


@router.get("/portal/memoranda/{memorandum_id}", response_class=HTMLResponse)
def memorandum_page(
    request: Request, memorandum_id: Id, org: OwnOrganisation, user: CurrentUser, session: SessionDep
) -> Response:
    return _detail(request, session, user, org, own_memorandum(session, user, org, memorandum_id))


@router.get("/portal/memoranda/{memorandum_id}/pdf")
def memorandum_pdf(
    request: Request,
    memorandum_id: Id,
    org: OwnOrganisation,
    user: CurrentUser,
    session: SessionDep,
    variant: Literal["issued", "signed"] | None = None,
) -> Response:
    """The issued or the signed PDF; opening it marks the organisation's party as having seen it."""
    memorandum = own_memorandum(session, user, org, memorandum_id)
    data, filename = archived_pdf(memorandum, variant)
    # A GET reads through a plain reader; its one write goes through a short writer of its own.
    with session_scope(request.app.state.engine, write=True) as writer:
        service.mark_viewed(
            session=writer, actor=user, memorandum=service.get(session=writer, memorandum_id=memorandum_id)
        )
    return pdf_response(data, filename)


def _check_own(request: Request, reader: Session, memorandum_id: int) -> int:
    """The organisation the logged-in partner user signs for, once the memorandum is theirs to see."""
    user = logged_in_user(request, reader)
    org = own_organisation(user, reader)
    own_memorandum(reader, user, org, memorandum_id)
    return org.id


async def _detail_again(
    request: Request, memorandum_id: int, form: str, values: dict, errors: dict, status_code: int
) -> Response:
    def show(reader: Session) -> Response:
        user = logged_in_user(request, reader)
        org = own_organisation(user, reader)
        memorandum = own_memorandum(reader, user, org, memorandum_id)
        failed = {"failed": {"form": form, "input": values, "errors": errors}}
        return _detail(request, reader, user, org, memorandum, failed, status_code)

    async with request_session(request, write=False) as reader:
        return await run_in_threadpool(show, reader)


@router.post("/portal/memoranda/{memorandum_id}/sign", response_class=HTMLResponse)
async def sign(memorandum_id: Id, request: Request, form: FormDep) -> Response:
    async with request_session(request, write=False) as reader:
        organisation_id = await run_in_threadpool(_check_own, request, reader, memorandum_id)
    values = form_values(form)
    refused = await sign_with_form(request, memorandum_id, organisation_id, values)
    if refused is None:
        return redirect(f"/portal/memoranda/{memorandum_id}?done=signed")
    return await _detail_again(request, memorandum_id, "sign", values, *refused)


@router.post("/portal/memoranda/{memorandum_id}/decline", response_class=HTMLResponse)
def decline(
    request: Request, memorandum_id: Id, org: OwnOrganisation, user: CurrentUser, session: SessionDep, form: FormDep
) -> Response:
    memorandum = own_memorandum(session, user, org, memorandum_id)
    values = form_values(form)
    data, errors = parse_form(DeclineBody, {k: v for k, v in values.items() if k == "reason"}, gettext_for(request))
    error = None
    if data is not None:
        try:
            service.decline(
                session=session, actor=user, memorandum=memorandum, organisation_id=org.id, reason=data.reason
            )
        except DomainError as refused:
            if isinstance(refused, NOT_THE_FORMS_FAULT):
                raise
            error, errors = refused, errors_of(refused, request)
        else:
            return redirect(f"/portal/memoranda/{memorandum_id}?done=declined")
    session.rollback()
    failed = {"failed": {"form": "decline", "input": values, "errors": errors}}
    return _detail(request, session, user, org, memorandum, failed, error.status_code if error else 422)
