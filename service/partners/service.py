"""The partner registry's rules: registering, duplicates, verification, search, export, contacts."""

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from datetime import timedelta
from difflib import SequenceMatcher
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from service import audit
from service.db import utcnow
from service.errors import Conflict, Invalid, NotFound
from service.i18n import N_, format_date, gettext_in
from service.notifications import service as notifications
from service.partners.models import (
    Contact,
    ContactCreate,
    ContactUpdate,
    Organisation,
    OrganisationCreate,
    OrganisationKind,
    OrganisationProfileUpdate,
    OrganisationSector,
    OrganisationUpdate,
    Sector,
    VerificationStatus,
)
from service.users.models import Role, User

# Legal forms and generic words that do not tell two organisations apart.
_NOISE_WORDS = {
    "ет", "еоод", "оод", "ад", "еад", "кд", "кда", "сд", "юлнц", "сдружение", "фондация", "сняко",
    "ltd", "llc", "plc", "inc", "eood", "ood", "ead", "ad", "et", "association", "foundation",
}  # fmt: skip
_NAME_SIMILARITY = 0.9


class DuplicateRegistrationNumber(Conflict):
    def __init__(self, existing: Organisation) -> None:
        super().__init__(
            N_("An organisation with this EIK is already registered: {name}."),
            field="registration_number",
            name=existing.name,
        )
        self.extra = {"existing_id": existing.id}


class PossibleDuplicate(Conflict):
    """A near-identical name: the caller must confirm with `allow_duplicate` to register anyway."""

    def __init__(self, matches: list[Organisation]) -> None:
        super().__init__(
            N_("This looks like an organisation already registered: {names}. Check before registering it again."),
            field="name",
            names=", ".join(m.name for m in matches),
        )
        self.matches = matches
        self.extra = {"possible_duplicates": [{"id": m.id, "name": m.name} for m in matches]}


def name_key(name: str) -> str:
    """The name reduced to what identifies it: case-folded, without quotes, punctuation or legal forms."""
    words = re.findall(r"\w+", name.casefold())
    return " ".join(w for w in words if w not in _NOISE_WORDS)


def _search_text(org: Organisation) -> str:
    return " ".join(filter(None, [org.name, org.name_en, org.registration_number])).casefold()


def _set_sectors(org: Organisation, sectors: list[Sector]) -> None:
    wanted = list(dict.fromkeys(sectors))
    org.sector_rows = [row for row in org.sector_rows if row.sector in wanted] + [
        OrganisationSector(sector=s) for s in wanted if s not in org.sectors
    ]


def get(*, session: Session, organisation_id: int) -> Organisation | None:
    """Returns an organisation by its id."""
    return session.get(Organisation, organisation_id)


def find_possible_duplicates(
    *, session: Session, name: str, name_en: str | None = None, exclude_id: int | None = None
) -> list[Organisation]:
    """Organisations whose name (Bulgarian or English) is near-identical to the given ones."""
    keys = [k for k in (name_key(name), name_key(name_en or "")) if k]
    if not keys:
        return []
    query = select(Organisation)
    if exclude_id is not None:
        query = query.where(Organisation.id != exclude_id)
    matches = []
    for org in session.exec(query):
        candidates = [k for k in (name_key(org.name), name_key(org.name_en or "")) if k]
        if any(SequenceMatcher(None, a, b).ratio() >= _NAME_SIMILARITY for a in keys for b in candidates):
            matches.append(org)
    return matches


def _check_registration_number(session: Session, number: str | None, exclude_id: int | None = None) -> None:
    if not number:
        return
    query = select(Organisation).where(Organisation.registration_number == number)
    if exclude_id is not None:
        query = query.where(Organisation.id != exclude_id)
    existing = session.exec(query).first()
    if existing:
        raise DuplicateRegistrationNumber(existing)


def create(*, session: Session, actor: User, data: OrganisationCreate, allow_duplicate: bool = False) -> Organisation:
    """Registers an organisation, refusing a known EIK and, unless confirmed, a near-identical name."""
    _check_registration_number(session, data.registration_number)
    if not allow_duplicate:
        matches = find_possible_duplicates(session=session, name=data.name, name_en=data.name_en)
        if matches:
            raise PossibleDuplicate(matches)
    fields = data.model_dump(exclude={"sectors", "website"})
    org = Organisation(**fields, website=str(data.website) if data.website else None)
    _set_sectors(org, data.sectors)
    org.search_text = _search_text(org)
    session.add(org)
    audit.record(session, actor=actor, action="organisation.create", entity=org)
    _commit_unique(session)
    return org


def _commit_unique(session: Session) -> None:
    """Commits, turning a lost race on the unique EIK into the same 409 as the check before it."""
    try:
        session.commit()
    except sa.exc.IntegrityError as error:
        session.rollback()
        raise Conflict(
            N_("An organisation with this EIK is already registered."), field="registration_number"
        ) from error


def update(
    *, session: Session, actor: User, org: Organisation, data: OrganisationUpdate | OrganisationProfileUpdate
) -> Organisation:
    """Changes the given fields of an organisation."""
    before = audit.snapshot(org)
    changes = data.model_dump(exclude_unset=True)
    if "registration_number" in changes:
        _check_registration_number(session, changes["registration_number"], exclude_id=org.id)
    for field in ("name", "kind"):
        if field in changes and changes[field] is None:
            raise Invalid(N_("This field cannot be empty."), field=field)
    for field in ("capabilities", "address", "service_area"):
        if field in changes and changes[field] is None:
            changes[field] = ""
    sectors = changes.pop("sectors", None)
    if "website" in changes:
        changes["website"] = str(data.website) if data.website else None
    for field, value in changes.items():
        setattr(org, field, value)
    if sectors is not None:
        _set_sectors(org, sectors)
    org.search_text = _search_text(org)
    org.updated_at = utcnow()
    session.add(org)
    audit.record(session, actor=actor, action="organisation.update", entity=org, before=before)
    _commit_unique(session)
    return org


def verify(*, session: Session, actor: User, org: Organisation) -> Organisation:
    """Marks an organisation verified by `actor` now (also re-verifies a verified one)."""
    before = audit.snapshot(org)
    org.verification_status = VerificationStatus.verified
    org.verified_at = utcnow()
    org.verified_by_id = actor.id
    org.suspended_reason = None
    org.updated_at = utcnow()
    session.add(org)
    audit.record(session, actor=actor, action="organisation.verify", entity=org, before=before)
    session.commit()
    return org


def suspend(*, session: Session, actor: User, org: Organisation, reason: str) -> Organisation:
    """Suspends an organisation, with the reason."""
    if org.verification_status == VerificationStatus.suspended:
        raise Conflict(N_("This organisation is already suspended."))
    before = audit.snapshot(org)
    org.verification_status = VerificationStatus.suspended
    org.suspended_reason = reason
    org.updated_at = utcnow()
    session.add(org)
    audit.record(session, actor=actor, action="organisation.suspend", entity=org, before=before)
    session.commit()
    return org


@dataclass(frozen=True)
class OrganisationFilter:
    q: str | None = None
    kind: OrganisationKind | None = None
    sector: Sector | None = None
    verification_status: VerificationStatus | None = None

    def apply(self, query: Any) -> Any:
        if self.q and self.q.strip():
            pattern = (
                "%" + self.q.strip().casefold().replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"
            )
            query = query.where(col(Organisation.search_text).like(pattern, escape="\\"))
        if self.kind:
            query = query.where(Organisation.kind == self.kind)
        if self.verification_status:
            query = query.where(Organisation.verification_status == self.verification_status)
        if self.sector:
            query = query.where(
                sa.exists().where(
                    OrganisationSector.organisation_id == Organisation.id, OrganisationSector.sector == self.sector
                )
            )
        return query


def search(
    *, session: Session, filters: OrganisationFilter, limit: int = 50, offset: int = 0
) -> tuple[list[Organisation], int]:
    """A page of organisations matching the filters, by name, and how many match in all."""
    total = session.exec(filters.apply(select(func.count()).select_from(Organisation))).one()
    rows = session.exec(
        filters.apply(select(Organisation)).order_by(Organisation.name, Organisation.id).offset(offset).limit(limit)
    )
    return list(rows), total


CSV_COLUMNS = [
    "id", "name", "name_en", "kind", "registration_number", "sectors", "verification_status",
    "verified_at", "capabilities", "address", "service_area", "website", "email", "phone",
    "primary_contact", "primary_contact_phone", "primary_contact_email",
]  # fmt: skip


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_csv(*, session: Session, filters: OrganisationFilter) -> str:
    """The registry (filtered) as CSV, with a BOM so spreadsheets read the Cyrillic as UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    orgs = session.exec(filters.apply(select(Organisation)).order_by(Organisation.name, Organisation.id)).all()
    primaries: dict[int, Contact] = {}
    for contact in session.exec(select(Contact).order_by(Contact.is_primary.desc(), Contact.id.desc())):
        primaries.setdefault(contact.organisation_id, contact)  # the first: the primary, else the newest
    for org in orgs:
        contact = primaries.get(org.id)
        writer.writerow(
            _cell(v)
            for v in [
                org.id, org.name, org.name_en, org.kind, org.registration_number, ";".join(org.sectors),
                org.verification_status, org.verified_at.isoformat() if org.verified_at else "",
                org.capabilities, org.address, org.service_area, org.website, org.email, org.phone,
                contact.full_name if contact else "", contact.phone if contact else "",
                contact.email if contact else "",
            ]
        )  # fmt: skip
    return "\ufeff" + out.getvalue()


def get_contact(*, session: Session, org: Organisation, contact_id: int) -> Contact:
    """The contact with this id of this organisation, or NotFound."""
    contact = session.get(Contact, contact_id)
    if contact is None or contact.organisation_id != org.id:
        raise NotFound(N_("There is no such contact."))
    return contact


def _one_primary(session: Session, contact: Contact) -> None:
    if contact.is_primary:
        others = select(Contact).where(
            Contact.organisation_id == contact.organisation_id, Contact.id != contact.id, col(Contact.is_primary)
        )
        for other in session.exec(others):
            other.is_primary = False
            session.add(other)


def add_contact(*, session: Session, actor: User, org: Organisation, data: ContactCreate) -> Contact:
    """Adds a contact person; a new primary contact replaces the previous one."""
    contact = Contact(**data.model_dump(), organisation_id=org.id)
    session.add(contact)
    session.flush()
    _one_primary(session, contact)
    audit.record(session, actor=actor, action="contact.create", entity=contact)
    session.commit()
    return contact


def update_contact(*, session: Session, actor: User, contact: Contact, data: ContactUpdate) -> Contact:
    """Changes the given fields of a contact."""
    before = audit.snapshot(contact)
    for field, value in data.model_dump(exclude_unset=True).items():
        if value is None and field in ("full_name", "is_primary", "available_24_7", "role"):
            raise Invalid(N_("This field cannot be empty."), field=field)
        setattr(contact, field, value)
    session.add(contact)
    _one_primary(session, contact)
    audit.record(session, actor=actor, action="contact.update", entity=contact, before=before)
    session.commit()
    return contact


def delete_contact(*, session: Session, actor: User, contact: Contact) -> None:
    """Removes a contact person."""
    before = audit.snapshot(contact)
    audit.record(
        session, actor=actor, action="contact.delete", entity_name="contact", entity_id=contact.id, before=before
    )
    session.delete(contact)
    session.commit()


def due_for_reverification(
    *, session: Session, older_than_days: int, unreminded_only: bool = True
) -> list[Organisation]:
    """Verified organisations whose verification is older than the limit (by default only those not yet
    reminded of; the dashboard lists them all until they are verified again)."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    query = select(Organisation).where(
        Organisation.verification_status == VerificationStatus.verified,
        col(Organisation.verified_at) < cutoff,
    )
    if unreminded_only:
        query = query.where(
            sa.or_(
                col(Organisation.reverification_reminded_at).is_(None),
                col(Organisation.reverification_reminded_at) < col(Organisation.verified_at),
            )
        )
    return list(session.exec(query.order_by(Organisation.verified_at)))


def remind_reverification(*, session: Session, older_than_days: int, base_url: str) -> int:
    """E-mails coordinators the organisations due for re-verification, once per verification; returns how many."""
    due = due_for_reverification(session=session, older_than_days=older_than_days)
    if not due:
        return 0
    staff = [
        user
        for user in session.exec(select(User).where(col(User.is_active)).order_by(User.id))
        if user.has_role(Role.coordinator, Role.admin)
    ]
    for user in staff:
        _ = gettext_in(user.language)
        lines = [
            f"- {org.name} ({_('verified on')} {format_date(org.verified_at, user.language)}): "
            f"{base_url.rstrip('/')}/staff/partners/{org.id}"
            for org in due
        ]
        body = "\n".join([_("These partner organisations were verified more than a year ago:"), "", *lines, "",
                          _("Check their details and verify them again, or suspend them.")])  # fmt: skip
        key = "partners.reverification:{}:{}".format(
            user.id, ",".join(f"{o.id}@{o.verified_at:%Y%m%d%H%M%S}" for o in due)
        )
        notifications.enqueue(
            session=session,
            to_address=user.email,
            subject=_("Partners due for re-verification: {count}").format(count=len(due)),
            body=body,
            dedupe_key=hashlib.sha256(key.encode()).hexdigest(),
        )
    now = utcnow()
    for org in due:
        # Only if still the verification read above: on PostgreSQL a re-verification may have committed
        # meanwhile, and that one is to be reminded of when it grows old.
        session.execute(
            sa.update(Organisation)
            .where(col(Organisation.id) == org.id, col(Organisation.verified_at) == org.verified_at)
            .values(reverification_reminded_at=now)
        )
    audit.record(
        session,
        actor="system:partners.reverification_reminders",
        action="organisation.reverification_reminded",
        entity_name="organisation",
        after={"organisation_ids": [org.id for org in due], "notified": [u.email for u in staff]},
    )
    session.commit()
    return len(due)
