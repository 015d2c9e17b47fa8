"""The rules of memoranda: drafting, issuing (the content frozen into a PDF), signing by every party,
activation with the final signed PDF, termination, renewal, expiry, and verification.

Rendering a PDF takes a second or more, so it never happens while a write transaction is open: a draft is
rendered from a reading session and issued with a check that it did not change meanwhile; the final PDF
of a fully signed memorandum is made after the last signature commits (`finalise`), and a job finishes
any that a crash left without one.
"""

import base64
import json
import secrets
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from service import audit
from service.config import settings
from service.db import utcnow
from service.errors import Conflict, Forbidden, Invalid, InvalidFields, NotFound
from service.i18n import N_, format_date, gettext_in
from service.memoranda import archive, documents
from service.memoranda.models import (
    AWAITING_SIGNATURES,
    KIND_LABELS,
    ON_RECORD,
    Memorandum,
    MemorandumCreate,
    MemorandumParty,
    MemorandumStatus,
    MemorandumUpdate,
    SignatureMethod,
)
from service.notifications import service as notifications
from service.partners.models import Contact, Organisation, VerificationStatus
from service.users.models import Role, User

NO_SUCH_MEMORANDUM = N_("There is no memorandum with this id.")
# Reminders before valid-until, in days; the job sends each once.
EXPIRY_REMINDER_DAYS = (30, 7)
# Unsigned parties are reminded this many days before the signing deadline (and once a day after that).
SIGNING_REMINDER_DAYS = 3


def today() -> date:
    """The date in the municipality's time zone: memoranda run by local calendar days."""
    return utcnow().astimezone(ZoneInfo(settings.timezone)).date()


def new_verification_code() -> str:
    """16 base32 characters (80 random bits): printed on every page, unguessable."""
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii")


def verify_url(code: str) -> str:
    return f"{settings.base_url.rstrip('/')}/verify/{code}"


# --- reading -----------------------------------------------------------------------------------------


def get(*, session: Session, memorandum_id: int) -> Memorandum:
    memorandum = session.get(Memorandum, memorandum_id)
    if memorandum is None:
        raise NotFound(NO_SUCH_MEMORANDUM)
    return memorandum


def parties_of(*, session: Session, memorandum: Memorandum) -> list[MemorandumParty]:
    return list(
        session.exec(
            select(MemorandumParty)
            .where(MemorandumParty.memorandum_id == memorandum.id)
            .order_by(col(MemorandumParty.position))
        )
    )


def parties_by_memorandum(*, session: Session, memoranda: Iterable[Memorandum]) -> dict[int, list[MemorandumParty]]:
    ids = [m.id for m in memoranda]
    grouped: dict[int, list[MemorandumParty]] = {i: [] for i in ids}
    if ids:
        rows = session.exec(
            select(MemorandumParty)
            .where(col(MemorandumParty.memorandum_id).in_(ids))
            .order_by(col(MemorandumParty.memorandum_id), col(MemorandumParty.position))
        )
        for party in rows:
            grouped[party.memorandum_id].append(party)
    return grouped


def superseded_by(*, session: Session, memoranda: Iterable[Memorandum]) -> dict[int, int]:
    """For each of `memoranda` that a newer one renews: that one's id."""
    ids = [m.id for m in memoranda]
    if not ids:
        return {}
    rows = session.exec(
        select(Memorandum.supersedes_id, func.max(Memorandum.id))
        .where(col(Memorandum.supersedes_id).in_(ids))
        .group_by(col(Memorandum.supersedes_id))
    )
    return dict(rows.all())


def list_memoranda(
    *,
    session: Session,
    status: MemorandumStatus | None = None,
    organisation_id: int | None = None,
    template: str | None = None,
    expiring_before: date | None = None,
    party_organisation_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Memorandum], int]:
    """Memoranda, the newest first. `party_organisation_id` limits to a partner's own, never drafts."""
    query = select(Memorandum)
    for organisation in (organisation_id, party_organisation_id):
        if organisation is not None:
            query = query.where(
                col(Memorandum.id).in_(
                    select(MemorandumParty.memorandum_id).where(MemorandumParty.organisation_id == organisation)
                )
            )
    if party_organisation_id is not None:
        query = query.where(Memorandum.status != MemorandumStatus.draft)
    if status is not None:
        query = query.where(Memorandum.status == status)
    if template is not None:
        query = query.where(Memorandum.template == template)
    if expiring_before is not None:
        query = query.where(Memorandum.valid_until <= expiring_before)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    items = session.exec(query.order_by(col(Memorandum.id).desc()).limit(limit).offset(offset)).all()
    return list(items), total


def lookup(*, session: Session, key: str) -> Memorandum | None:
    """The issued memorandum a verification code or a PDF's SHA-256 belongs to; None for anything else."""
    key = key.strip()
    if archive.SHA256.match(key.lower()):
        digest = key.lower()
        found = session.exec(
            select(Memorandum).where(sa.or_(Memorandum.sha256 == digest, Memorandum.signed_sha256 == digest))
        ).first()
    else:
        found = session.exec(select(Memorandum).where(Memorandum.verification_code == key.upper())).first()
    return found if found is not None and found.status in ON_RECORD else None


# --- drafting ----------------------------------------------------------------------------------------


def _check_template(template: str) -> None:
    if template not in documents.KINDS:
        raise Invalid(N_("There is no memorandum template of this kind."), field="template")


def _clean_variables(template: str, values: dict[str, Any]) -> dict[str, Any]:
    """The variables checked against the template's declaration, stored as JSON-safe values."""
    clean, errors = documents.validate_variables(template, values)
    if errors:
        raise InvalidFields({f"variables.{name}": message for name, message in errors.items()})
    return json.loads(documents.variables_json(clean))


def _check_dates(signing_deadline: date, valid_from: date, valid_until: date) -> None:
    if valid_until < valid_from:
        raise Invalid(N_("Valid until must not be before valid from."), field="valid_until")
    if signing_deadline < today():
        raise Invalid(N_("The signing deadline must not be in the past."), field="signing_deadline")
    if signing_deadline > valid_until:
        raise Invalid(N_("The signing deadline must not be after the memorandum ends."), field="signing_deadline")


def _partner_parties(session: Session, partner_ids: list[int], language: str) -> list[MemorandumParty]:
    organisations = {o.id: o for o in session.exec(select(Organisation).where(col(Organisation.id).in_(partner_ids)))}
    missing = [i for i in partner_ids if i not in organisations]
    if missing:
        raise Invalid(N_("There is no organisation with the id {id}."), field="partner_ids", id=missing[0])
    parties = []
    for position, organisation_id in enumerate(partner_ids):
        organisation = organisations[organisation_id]
        if organisation.verification_status == VerificationStatus.suspended:
            raise Invalid(N_("{name} is suspended and cannot be a party."), field="partner_ids", name=organisation.name)
        contact = session.exec(
            select(Contact)
            .where(Contact.organisation_id == organisation_id)
            .order_by(col(Contact.is_primary).desc(), col(Contact.id))
        ).first()
        parties.append(
            MemorandumParty(
                position=position,
                organisation_id=organisation_id,
                name=(organisation.name_en or organisation.name) if language == "en" else organisation.name,
                registration_number=organisation.registration_number,
                address=organisation.address or "",
                email=organisation.email,
                representative_name=contact.full_name if contact else "",
                representative_title=contact.role if contact else "",
            )
        )
    return parties


def _municipality_party(position: int, language: str) -> MemorandumParty:
    municipality = documents.municipality_context(language)
    return MemorandumParty(
        position=position,
        organisation_id=None,
        name=municipality["name"],
        registration_number=municipality["eik"] or None,
        address=municipality["address"] or "",
        representative_name=municipality["representative"] or "",
        representative_title=municipality["representative_title"] or "",
    )


def _set_parties(session: Session, memorandum: Memorandum, partner_ids: list[int]) -> None:
    for party in parties_of(session=session, memorandum=memorandum):
        session.delete(party)
    session.flush()
    parties = _partner_parties(session, partner_ids, memorandum.language)
    # Partners sign first and the municipality last, when the order matters.
    parties.append(_municipality_party(len(parties), memorandum.language))
    for party in parties:
        party.memorandum_id = memorandum.id
        session.add(party)


def create(*, session: Session, actor: User, data: MemorandumCreate) -> Memorandum:
    """A new draft memorandum of a template, with its parties and filled variables."""
    _check_template(data.template)
    variables = _clean_variables(data.template, data.variables)
    _check_dates(data.signing_deadline, data.valid_from, data.valid_until)
    return _new_draft(session, actor, data.model_copy(update={"variables": variables}), supersedes_id=None)


def _new_draft(session: Session, actor: User, data: MemorandumCreate, *, supersedes_id: int | None) -> Memorandum:
    memorandum = Memorandum(
        template=data.template,
        template_version=documents.template_version(data.template, data.language),
        language=data.language,
        variables=data.variables,
        sequential=data.sequential,
        signing_deadline=data.signing_deadline,
        valid_from=data.valid_from,
        valid_until=data.valid_until,
        verification_code=new_verification_code(),
        supersedes_id=supersedes_id,
        created_by_id=actor.id,
    )
    session.add(memorandum)
    session.flush()
    _set_parties(session, memorandum, data.partner_ids)
    audit.record(session, actor=actor, action="memorandum.create", entity=memorandum)
    session.commit()
    return memorandum


def _require_status(memorandum: Memorandum, allowed: Iterable[MemorandumStatus], message: str) -> None:
    if memorandum.status not in allowed:
        raise Conflict(message)


def _lock(session: Session, memorandum_id: int) -> Memorandum:
    """The memorandum re-read under a row lock: two decisions on one memorandum take turns."""
    memorandum = session.exec(
        select(Memorandum)
        .where(Memorandum.id == memorandum_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if memorandum is None:
        raise NotFound(NO_SUCH_MEMORANDUM)
    return memorandum


def update(*, session: Session, actor: User, memorandum: Memorandum, data: MemorandumUpdate) -> Memorandum:
    """Changes a draft (an issued memorandum is frozen: a change is a new one)."""
    memorandum = _lock(session, memorandum.id)
    _require_status(memorandum, [MemorandumStatus.draft], N_("Only a draft can be changed."))
    before = audit.snapshot(memorandum)
    changes = data.model_dump(exclude_unset=True)
    if "variables" in changes and changes["variables"] is not None:
        memorandum.variables = _clean_variables(memorandum.template, changes["variables"])
    for name in ("sequential", "signing_deadline", "valid_from", "valid_until"):
        if changes.get(name) is not None:
            setattr(memorandum, name, changes[name])
    _check_dates(memorandum.signing_deadline, memorandum.valid_from, memorandum.valid_until)
    if changes.get("partner_ids") is not None:
        _set_parties(session, memorandum, changes["partner_ids"])
    memorandum.template_version = documents.template_version(memorandum.template, memorandum.language)
    memorandum.updated_at = utcnow()
    session.add(memorandum)
    audit.record(session, actor=actor, action="memorandum.update", entity=memorandum, before=before)
    session.commit()
    return memorandum


def discard(*, session: Session, actor: User, memorandum: Memorandum) -> None:
    """Deletes a draft (the audit log keeps what it was)."""
    memorandum = _lock(session, memorandum.id)
    _require_status(memorandum, [MemorandumStatus.draft], N_("Only a draft can be discarded."))
    before = audit.snapshot(memorandum)
    for party in parties_of(session=session, memorandum=memorandum):
        session.delete(party)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="memorandum.discard",
        entity_name="memorandum",
        entity_id=memorandum.id,
        before=before,
    )
    session.delete(memorandum)
    session.commit()


# --- the document ------------------------------------------------------------------------------------


def document_context(*, session: Session, memorandum: Memorandum, draft: bool) -> dict[str, Any]:
    """Everything the template renders from: the system context and the typed filled variables."""
    language = memorandum.language.value
    variables, errors = documents.validate_variables(memorandum.template, memorandum.variables)
    if errors:
        raise InvalidFields({f"variables.{name}": message for name, message in errors.items()})
    parties = [p for p in parties_of(session=session, memorandum=memorandum) if not p.is_municipality]
    url = verify_url(memorandum.verification_code)
    return {
        **variables,
        "language": language,
        "memorandum": {
            "code": memorandum.verification_code,
            "verify_url": url,
            "qr_svg_data_uri": None,  # drawn by the render worker from verify_url
            "issued_on": None if draft else today(),
            "valid_from": memorandum.valid_from,
            "valid_until": memorandum.valid_until,
            "signing_deadline": memorandum.signing_deadline,
            "draft": draft,
            "title": gettext_in(language)(KIND_LABELS[memorandum.template]),
        },
        "municipality": documents.municipality_context(language),
        "parties": [
            {
                "name": p.name,
                "registration_number": p.registration_number or "",
                "address": p.address,
                "representative_name": p.representative_name,
                "representative_title": p.representative_title,
                "email": p.email or "",
            }
            for p in parties
        ],
    }


def render(*, session: Session, memorandum: Memorandum, draft: bool) -> bytes:
    """The memorandum as PDF: a preview with the DRAFT watermark, or the document to issue. Slow: call it
    from a reading session, never inside a write transaction."""
    context = document_context(session=session, memorandum=memorandum, draft=draft)
    return documents.render_pdf(
        memorandum.template,
        memorandum.language.value,
        context=context,
        variables_json=documents.variables_json(memorandum.variables),
    )


def check_issuable(memorandum: Memorandum) -> None:
    """Refuses to render for issue what could not be issued anyway."""
    _require_status(memorandum, [MemorandumStatus.draft], N_("Only a draft can be issued."))
    _check_dates(memorandum.signing_deadline, memorandum.valid_from, memorandum.valid_until)


def issue(*, session: Session, actor: User, memorandum_id: int, pdf: bytes, rendered_from: datetime) -> Memorandum:
    """Freezes a draft: the PDF rendered from it (while it was as of `rendered_from`) is archived under its
    SHA-256 and the parties are asked to sign."""
    memorandum = _lock(session, memorandum_id)
    check_issuable(memorandum)
    if memorandum.updated_at != rendered_from:
        raise Conflict(N_("The draft changed while it was being issued. Check it and issue it again."))
    before = audit.snapshot(memorandum)
    memorandum.sha256 = archive.store(pdf)
    memorandum.template_version = documents.template_version(memorandum.template, memorandum.language)
    memorandum.status = MemorandumStatus.issued
    memorandum.issued_at = memorandum.updated_at = utcnow()
    session.add(memorandum)
    audit.record(session, actor=actor, action="memorandum.issue", entity=memorandum, before=before)
    for party in _parties_to_ask(session, memorandum):
        _notify_party(session, memorandum, party, "to_sign")
    session.commit()
    return memorandum


def _parties_to_ask(session: Session, memorandum: Memorandum) -> list[MemorandumParty]:
    """The parties whose signature is asked for now: all unsigned ones, or in order only the next one."""
    waiting = [p for p in parties_of(session=session, memorandum=memorandum) if p.signed_at is None]
    return waiting[:1] if memorandum.sequential else waiting


# --- signing -----------------------------------------------------------------------------------------


def party_for(*, session: Session, memorandum: Memorandum, organisation_id: int | None) -> MemorandumParty:
    party = session.exec(
        select(MemorandumParty).where(
            MemorandumParty.memorandum_id == memorandum.id,
            MemorandumParty.organisation_id == organisation_id
            if organisation_id is not None
            else col(MemorandumParty.organisation_id).is_(None),
        )
    ).first()
    if party is None:
        raise Invalid(N_("This organisation is not a party to the memorandum."), field="organisation_id")
    return party


def acting_party(
    *, session: Session, actor: User, memorandum: Memorandum, organisation_id: int | None
) -> MemorandumParty:
    """The party `actor` acts for: a partner user's own organisation; for staff, the one named (none: us)."""
    if actor.has_role(Role.admin, Role.coordinator):
        return party_for(session=session, memorandum=memorandum, organisation_id=organisation_id)
    if not actor.has_role(Role.partner) or actor.organisation_id is None:
        raise Forbidden(N_("Your role does not allow this."))
    if organisation_id is not None and organisation_id != actor.organisation_id:
        raise Forbidden(N_("You can sign only for your own organisation."))
    return party_for(session=session, memorandum=memorandum, organisation_id=actor.organisation_id)


def mark_viewed(*, session: Session, actor: User, memorandum: Memorandum) -> None:
    """Records that a partner's user opened the memorandum (the party's status becomes `viewed`)."""
    if actor.organisation_id is None or memorandum.status not in AWAITING_SIGNATURES:
        return
    party = session.exec(
        select(MemorandumParty).where(
            MemorandumParty.memorandum_id == memorandum.id,
            MemorandumParty.organisation_id == actor.organisation_id,
            col(MemorandumParty.viewed_at).is_(None),
        )
    ).first()
    if party is None:
        return
    party.viewed_at = utcnow()
    session.add(party)
    audit.record(session, actor=actor, action="memorandum.view", entity=party)
    session.commit()


def _check_can_act(session: Session, memorandum: Memorandum, party: MemorandumParty) -> None:
    _require_status(memorandum, AWAITING_SIGNATURES, N_("This memorandum is not awaiting signatures."))
    if party.signed_at is not None:
        raise Conflict(N_("This party has already signed."))
    if party.declined_at is not None:
        raise Conflict(N_("This party has declined."))
    if memorandum.sequential:
        earlier = [p for p in parties_of(session=session, memorandum=memorandum) if p.position < party.position]
        if any(p.signed_at is None for p in earlier):
            raise Conflict(N_("The parties sign in order, and an earlier party has not signed yet."))


def sign(
    *,
    session: Session,
    actor: User,
    memorandum: Memorandum,
    organisation_id: int | None,
    signer_name: str,
    signer_title: str,
    method: SignatureMethod = SignatureMethod.click,
    scan: bytes | None = None,
) -> Memorandum:
    """Records one party's signature (a click in the portal, or staff uploading a scanned wet-ink copy).
    The last signature makes the memorandum active; `finalise` then makes its signed PDF."""
    memorandum = _lock(session, memorandum.id)
    party = acting_party(session=session, actor=actor, memorandum=memorandum, organisation_id=organisation_id)
    if method == SignatureMethod.upload:
        if not actor.has_role(Role.admin, Role.coordinator):
            raise Forbidden(N_("Only staff record a scanned copy."))
        if not scan:
            raise Invalid(N_("Attach the scanned, signed copy."), field="scan")
        if not scan.startswith(b"%PDF-"):
            raise Invalid(N_("The scanned copy must be a PDF file."), field="scan")
    _check_can_act(session, memorandum, party)
    if method == SignatureMethod.click and not party.is_municipality and actor.organisation_id != party.organisation_id:
        raise Forbidden(
            N_("A partner signs through its own users in the portal; staff record its signature with the signed copy.")
        )
    before = audit.snapshot(party)
    party.signed_at = utcnow()
    party.signer_name = signer_name
    party.signer_title = signer_title
    party.signer_user_id = actor.id
    party.method = method
    party.scan_sha256 = archive.store(scan) if scan else None
    session.add(party)
    audit.record(session, actor=actor, action="memorandum.sign", entity=party, before=before)
    before = audit.snapshot(memorandum)
    parties = parties_of(session=session, memorandum=memorandum)
    if all(p.signed_at is not None for p in parties):
        memorandum.status = MemorandumStatus.active
        memorandum.activated_at = utcnow()
        _supersede_predecessor(session, actor, memorandum)
        for other in parties:
            _notify_party(session, memorandum, other, "active")
    else:
        memorandum.status = MemorandumStatus.partially_signed
        if memorandum.sequential:
            for waiting in _parties_to_ask(session, memorandum)[:1]:
                _notify_party(session, memorandum, waiting, "to_sign")
    memorandum.updated_at = utcnow()
    session.add(memorandum)
    audit.record(session, actor=actor, action=f"memorandum.{memorandum.status.value}", entity=memorandum, before=before)
    session.commit()
    return memorandum


def _supersede_predecessor(session: Session, actor: User, memorandum: Memorandum) -> None:
    if memorandum.supersedes_id is None:
        return
    old = _lock(session, memorandum.supersedes_id)
    if old.status in (MemorandumStatus.active, MemorandumStatus.expired):
        before = audit.snapshot(old)
        old.status = MemorandumStatus.superseded
        old.ended_at = utcnow()
        old.status_reason = f"#{memorandum.id}"
        session.add(old)
        audit.record(session, actor=actor, action="memorandum.superseded", entity=old, before=before)


def decline(
    *, session: Session, actor: User, memorandum: Memorandum, organisation_id: int | None, reason: str
) -> Memorandum:
    """A party declines to sign, with its reason: the memorandum is declined (staff may renew it)."""
    memorandum = _lock(session, memorandum.id)
    party = acting_party(session=session, actor=actor, memorandum=memorandum, organisation_id=organisation_id)
    _require_status(memorandum, AWAITING_SIGNATURES, N_("This memorandum is not awaiting signatures."))
    if party.signed_at is not None:
        raise Conflict(N_("This party has already signed."))
    if party.declined_at is not None:
        raise Conflict(N_("This party has declined."))
    before = audit.snapshot(party)
    party.declined_at = utcnow()
    party.decline_reason = reason
    session.add(party)
    audit.record(session, actor=actor, action="memorandum.party_decline", entity=party, before=before)
    before = audit.snapshot(memorandum)
    memorandum.status = MemorandumStatus.declined
    memorandum.status_reason = reason
    memorandum.ended_at = memorandum.updated_at = utcnow()
    session.add(memorandum)
    audit.record(session, actor=actor, action="memorandum.decline", entity=memorandum, before=before)
    _notify_staff(session, memorandum, N_("A party declined memorandum {code}: {reason}"), reason=reason)
    session.commit()
    return memorandum


def cancel(*, session: Session, actor: User, memorandum: Memorandum, reason: str) -> Memorandum:
    """Staff withdraw an issued memorandum before every party has signed."""
    return _end(session, actor, memorandum, AWAITING_SIGNATURES, MemorandumStatus.cancelled, reason,
                N_("Only a memorandum still awaiting signatures can be cancelled."))  # fmt: skip


def terminate(*, session: Session, actor: User, memorandum: Memorandum, reason: str) -> Memorandum:
    """Ends a memorandum in force before its time, with the reason."""
    return _end(session, actor, memorandum, [MemorandumStatus.active], MemorandumStatus.terminated, reason,
                N_("Only a memorandum in force can be terminated."))  # fmt: skip


def _end(
    session: Session,
    actor: User,
    memorandum: Memorandum,
    allowed: Iterable[MemorandumStatus],
    status: MemorandumStatus,
    reason: str,
    refusal: str,
) -> Memorandum:
    memorandum = _lock(session, memorandum.id)
    _require_status(memorandum, allowed, refusal)
    before = audit.snapshot(memorandum)
    memorandum.status = status
    memorandum.status_reason = reason
    memorandum.ended_at = memorandum.updated_at = utcnow()
    session.add(memorandum)
    audit.record(session, actor=actor, action=f"memorandum.{status.value}", entity=memorandum, before=before)
    for party in parties_of(session=session, memorandum=memorandum):
        _notify_party(session, memorandum, party, status.value)
    session.commit()
    return memorandum


def renew(*, session: Session, actor: User, memorandum: Memorandum) -> Memorandum:
    """A new draft prefilled from `memorandum` (the same parties, variables and length, starting when it
    ends), which supersedes it once in force. Variables today's template no longer accepts are shown on
    the draft's form to fix: issuing checks them again."""
    _require_status(
        memorandum,
        [MemorandumStatus.active, MemorandumStatus.expired, MemorandumStatus.declined, MemorandumStatus.cancelled],
        N_("Only a memorandum in force, expired, declined or cancelled can be renewed."),
    )
    partner_ids = [
        p.organisation_id for p in parties_of(session=session, memorandum=memorandum) if not p.is_municipality
    ]
    length = memorandum.valid_until - memorandum.valid_from
    start = max(today(), memorandum.valid_until + timedelta(days=1))
    data = MemorandumCreate.model_construct(
        template=memorandum.template,
        language=memorandum.language,
        partner_ids=partner_ids,
        variables=dict(memorandum.variables),
        sequential=memorandum.sequential,
        signing_deadline=min(start + length, max(start, today() + timedelta(days=14))),
        valid_from=start,
        valid_until=start + length,
    )
    return _new_draft(session, actor, data, supersedes_id=memorandum.id)


# --- the final, signed PDF ---------------------------------------------------------------------------


def final_pdf(*, session: Session, memorandum: Memorandum) -> bytes:
    """The issued PDF with a certificate page of the signatures appended and, when a signing certificate
    is configured, sealed with a PAdES signature. Slow: from a reading session."""
    from service import pdf
    from service.memoranda import signing

    issued = archive.load(memorandum.sha256)
    page = pdf.render_pdf(_certificate_html(session, memorandum), pdf_variant=None)
    combined = pdf.merge_pdfs(issued, page)
    identity = signing.configured_identity()
    if identity is None:
        return combined
    _ = gettext_in(memorandum.language.value)
    return signing.sign_pdf(
        combined,
        identity=identity,
        reason=_("Memorandum {code}, signed by all parties").format(code=memorandum.verification_code),
        location=documents.municipality_context(memorandum.language.value)["name"],
    )


def _certificate_html(session: Session, memorandum: Memorandum) -> str:
    from service.web import templates

    language = memorandum.language.value
    return templates.env.get_template("memoranda/_certificate.html").render(
        memorandum=memorandum,
        parties=parties_of(session=session, memorandum=memorandum),
        municipality=documents.municipality_context(language),
        verify_url=verify_url(memorandum.verification_code),
        language=language,
        _=gettext_in(language),
    )


def record_final(*, session: Session, memorandum_id: int, pdf: bytes) -> Memorandum | None:
    """Stores the final PDF of an active memorandum that has none yet (run twice, it acts once)."""
    memorandum = _lock(session, memorandum_id)
    if memorandum.signed_sha256 is not None or memorandum.activated_at is None:
        return None
    before = audit.snapshot(memorandum)
    memorandum.signed_sha256 = archive.store(pdf)
    session.add(memorandum)
    audit.record(session, actor=None, action="memorandum.final_pdf", entity=memorandum, before=before)
    session.commit()
    return memorandum


def awaiting_final_pdf(*, session: Session) -> list[int]:
    """The memoranda that came into force without their signed PDF (a crash, a failed render), oldest first."""
    return list(
        session.exec(
            select(Memorandum.id)
            .where(col(Memorandum.activated_at).is_not(None), col(Memorandum.signed_sha256).is_(None))
            .order_by(col(Memorandum.id))
        )
    )


# --- jobs ----------------------------------------------------------------------------------------------


def expire_due(*, session: Session, on: date | None = None) -> int:
    """Marks memoranda in force whose valid-until has passed as expired."""
    on = on or today()
    due = session.exec(
        select(Memorandum).where(Memorandum.status == MemorandumStatus.active, Memorandum.valid_until < on)
    ).all()
    for memorandum in due:
        memorandum = _lock(session, memorandum.id)
        if memorandum.status != MemorandumStatus.active:
            continue
        before = audit.snapshot(memorandum)
        memorandum.status = MemorandumStatus.expired
        memorandum.ended_at = memorandum.updated_at = utcnow()
        session.add(memorandum)
        audit.record(session, actor=None, action="memorandum.expire", entity=memorandum, before=before)
    session.commit()
    return len(due)


def remind_expiring(*, session: Session, on: date | None = None) -> int:
    """Tells the parties 30 and 7 days before a memorandum in force ends (each reminder once)."""
    on = on or today()
    sent = 0
    # The nearest first: a memorandum already within 7 days of its end gets that reminder, not the 30-day one too.
    for days in sorted(EXPIRY_REMINDER_DAYS):
        due = session.exec(
            select(Memorandum).where(
                Memorandum.status == MemorandumStatus.active,
                Memorandum.valid_until <= on + timedelta(days=days),
                Memorandum.valid_until >= on,
                sa.or_(col(Memorandum.expiry_reminded_days).is_(None), Memorandum.expiry_reminded_days > days),
            )
        ).all()
        for memorandum in due:
            memorandum = _lock(session, memorandum.id)
            if memorandum.expiry_reminded_days is not None and memorandum.expiry_reminded_days <= days:
                continue
            memorandum.expiry_reminded_days = days
            session.add(memorandum)
            for party in parties_of(session=session, memorandum=memorandum):
                _notify_party(session, memorandum, party, f"expiring_{days}", day=on)
            audit.record(session, actor=None, action=f"memorandum.remind_expiry_{days}", entity=memorandum)
            sent += 1
    session.commit()
    return sent


def remind_unsigned(*, session: Session, on: date | None = None) -> int:
    """Reminds parties that have not signed as the deadline nears (once a day), and tells staff once when a
    deadline has passed (the memorandum stays issued; they may extend it or cancel)."""
    zone = ZoneInfo(settings.timezone)
    # Acting as on `on`: at this time of day on that day, so a second run for the same day finds it done.
    now = utcnow() if on is None else datetime.combine(on, utcnow().astimezone(zone).timetz())
    on = on or today()
    sent = 0
    waiting = session.exec(
        select(Memorandum).where(
            col(Memorandum.status).in_(AWAITING_SIGNATURES),
            Memorandum.signing_deadline <= on + timedelta(days=SIGNING_REMINDER_DAYS),
        )
    ).all()
    for memorandum in waiting:
        if memorandum.signing_deadline < on:
            if memorandum.deadline_notice_at is None:
                memorandum.deadline_notice_at = now
                session.add(memorandum)
                _notify_staff(
                    session,
                    memorandum,
                    N_("The signing deadline of memorandum {code} has passed."),
                    once_per=memorandum.signing_deadline.isoformat(),  # an extended deadline passing is news again
                )
                sent += 1
            continue
        for party in _parties_to_ask(session, memorandum):
            if party.declined_at is not None or party.is_municipality:
                continue
            if party.reminded_at is not None and party.reminded_at.astimezone(zone).date() >= on:
                continue
            party.reminded_at = now
            session.add(party)
            _notify_party(session, memorandum, party, "reminder", day=on)
            sent += 1
    session.commit()
    return sent


def set_signing_deadline(*, session: Session, actor: User, memorandum: Memorandum, deadline: date) -> Memorandum:
    """Extends (or moves) the signing deadline of a memorandum awaiting signatures."""
    memorandum = _lock(session, memorandum.id)
    _require_status(memorandum, AWAITING_SIGNATURES, N_("This memorandum is not awaiting signatures."))
    if deadline < today():
        raise Invalid(N_("The signing deadline must not be in the past."), field="signing_deadline")
    if deadline > memorandum.valid_until:
        raise Invalid(N_("The signing deadline must not be after the memorandum ends."), field="signing_deadline")
    before = audit.snapshot(memorandum)
    memorandum.signing_deadline = deadline
    memorandum.deadline_notice_at = None
    memorandum.updated_at = utcnow()
    session.add(memorandum)
    audit.record(session, actor=actor, action="memorandum.deadline", entity=memorandum, before=before)
    session.commit()
    return memorandum


# --- e-mails -------------------------------------------------------------------------------------------

_SUBJECTS = {
    "to_sign": N_("A memorandum awaits your signature: {title}"),
    "reminder": N_("Reminder: a memorandum awaits your signature by {deadline}: {title}"),
    "active": N_("The memorandum is signed by all parties and in force: {title}"),
    "cancelled": N_("The memorandum was cancelled: {title}"),
    "terminated": N_("The memorandum was terminated: {title}"),
    "expiring_30": N_("The memorandum ends in 30 days, on {until}: {title}"),
    "expiring_7": N_("The memorandum ends in 7 days, on {until}: {title}"),
}


def _notify_party(
    session: Session, memorandum: Memorandum, party: MemorandumParty, what: str, *, day: date | None = None
) -> None:
    """Queues e-mails about `memorandum` to the party's active partner users (or, for us, coordinators)."""
    if party.is_municipality:
        recipients = _coordinators(session)
        link = f"{settings.base_url.rstrip('/')}/staff/memoranda/{memorandum.id}"
    else:
        recipients = [
            u
            for u in session.exec(
                select(User).where(User.organisation_id == party.organisation_id, col(User.is_active))
            ).all()
            if u.has_role(Role.partner)
        ]
        link = f"{settings.base_url.rstrip('/')}/portal/memoranda/{memorandum.id}"
    for user in recipients:
        _ = gettext_in(user.language)
        title = _(KIND_LABELS[memorandum.template])
        subject = _(_SUBJECTS[what]).format(
            title=title,
            deadline=format_date(memorandum.signing_deadline, user.language),
            until=format_date(memorandum.valid_until, user.language),
        )
        lines = [
            _("Memorandum: {title}").format(title=title),
            _("Verification code: {code}").format(code=memorandum.verification_code),
            _("Signing deadline: {date}").format(date=format_date(memorandum.signing_deadline, user.language)),
            _("Valid until: {date}").format(date=format_date(memorandum.valid_until, user.language)),
        ]
        if memorandum.status_reason and what in ("cancelled", "terminated"):
            lines.append(_("Reason: {reason}").format(reason=memorandum.status_reason))
        lines += ["", link]
        notifications.enqueue(
            session=session,
            to_address=user.email,
            subject=subject,
            body="\n".join(lines),
            dedupe_key=f"memorandum:{memorandum.id}:{what}:{party.id}:{user.id}:{(day or today()).isoformat()}",
        )


def _coordinators(session: Session) -> list[User]:
    users = session.exec(select(User).where(col(User.is_active))).all()
    return [u for u in users if u.has_role(Role.coordinator)]


def _notify_staff(session: Session, memorandum: Memorandum, message: str, *, once_per: str = "", **params: str) -> None:
    for user in _coordinators(session):
        _ = gettext_in(user.language)
        text = _(message).format(code=memorandum.verification_code, **params)
        notifications.enqueue(
            session=session,
            to_address=user.email,
            subject=text,
            body=f"{text}\n\n{settings.base_url.rstrip('/')}/staff/memoranda/{memorandum.id}",
            dedupe_key=f"memorandum:{memorandum.id}:staff:{message[:40]}:{once_per}:{user.id}",
        )
