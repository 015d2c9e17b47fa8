"""Memoranda, their parties and signatures, with the schemas the API and forms take."""

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import ConfigDict, StringConstraints, field_validator
from sqlmodel import Field, SQLModel

from service.db import EnumText, Id, UTCDateTime, utcnow
from service.i18n import N_


class MemorandumStatus(StrEnum):
    draft = "draft"
    issued = "issued"
    partially_signed = "partially_signed"
    active = "active"
    declined = "declined"
    cancelled = "cancelled"
    expired = "expired"
    terminated = "terminated"
    superseded = "superseded"


class PartyStatus(StrEnum):
    pending = "pending"
    viewed = "viewed"
    signed = "signed"
    declined = "declined"


class SignatureMethod(StrEnum):
    click = "click"
    upload = "upload"


class Language(StrEnum):
    bg = "bg"
    en = "en"


# Issued and awaiting signatures: what a party can still sign or decline.
AWAITING_SIGNATURES = frozenset({MemorandumStatus.issued, MemorandumStatus.partially_signed})
# Once issued, a document that stays on record and can be verified.
ON_RECORD = frozenset(MemorandumStatus) - {MemorandumStatus.draft}

KIND_LABELS = {
    "logistics_support": N_("Logistics support in emergencies"),
    "fundraising_campaign": N_("Joint fundraising campaign"),
    "public_awareness": N_("Informing and raising the awareness of the population"),
    "countering_disinformation": N_("Countering disinformation"),
    "public_consultation": N_("Public consultation on recovery measures"),
}
STATUS_LABELS = {
    MemorandumStatus.draft: N_("Draft, not issued"),
    MemorandumStatus.issued: N_("Issued for signing"),
    MemorandumStatus.partially_signed: N_("Partially signed"),
    MemorandumStatus.active: N_("In force"),
    MemorandumStatus.declined: N_("Declined by a party"),
    MemorandumStatus.cancelled: N_("Cancelled before signing"),
    MemorandumStatus.expired: N_("Expired"),
    MemorandumStatus.terminated: N_("Terminated"),
    MemorandumStatus.superseded: N_("Superseded"),
}
PARTY_STATUS_LABELS = {
    PartyStatus.pending: N_("Awaiting signature"),
    PartyStatus.viewed: N_("Opened, not signed"),
    PartyStatus.signed: N_("Signed"),
    PartyStatus.declined: N_("Declined"),
}
METHOD_LABELS = {
    SignatureMethod.click: N_("Signed in the portal"),
    SignatureMethod.upload: N_("Scanned wet-ink copy"),
}

PersonName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]


class Memorandum(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    template: str = Field(max_length=40, index=True)
    template_version: str = Field(max_length=64)
    language: Language = Field(sa_type=EnumText(Language, 2))
    # The filled variables as JSON (dates as ISO text, amounts as strings), checked against the declaration.
    variables: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    # Parties sign one after another in their order, or all at once.
    sequential: bool = False
    signing_deadline: date
    valid_from: date
    valid_until: date = Field(index=True)
    status: MemorandumStatus = Field(default=MemorandumStatus.draft, sa_type=EnumText(MemorandumStatus, 20), index=True)
    status_reason: str | None = Field(default=None, max_length=500)
    verification_code: str = Field(max_length=32, unique=True)
    sha256: str | None = Field(default=None, max_length=64, unique=True)
    signed_sha256: str | None = Field(default=None, max_length=64, unique=True)
    supersedes_id: int | None = Field(default=None, foreign_key="memorandum.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    issued_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    activated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # What the reminder jobs already did, so a second run does nothing.
    expiry_reminded_days: int | None = None
    deadline_notice_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    def audit_snapshot(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class MemorandumParty(SQLModel, table=True):
    """One party of a memorandum: a partner organisation, or the municipality (no organisation)."""

    __tablename__ = "memorandum_party"
    __table_args__ = (sa.UniqueConstraint("memorandum_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    memorandum_id: int = Field(foreign_key="memorandum.id", index=True)
    position: int
    organisation_id: int | None = Field(default=None, foreign_key="organisation.id", index=True)
    # The party as the document names it, frozen when the memorandum is made.
    name: str = Field(max_length=300)
    registration_number: str | None = Field(default=None, max_length=20)
    address: str = Field(default="", max_length=500)
    email: str | None = Field(default=None, max_length=320)
    representative_name: str = Field(default="", max_length=200)
    representative_title: str = Field(default="", max_length=200)
    viewed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    signed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    signer_name: str | None = Field(default=None, max_length=200)
    signer_title: str | None = Field(default=None, max_length=200)
    signer_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    method: SignatureMethod | None = Field(default=None, sa_type=EnumText(SignatureMethod, 10))
    scan_sha256: str | None = Field(default=None, max_length=64)
    declined_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decline_reason: str | None = Field(default=None, max_length=500)
    reminded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    @property
    def status(self) -> PartyStatus:
        if self.signed_at is not None:
            return PartyStatus.signed
        if self.declined_at is not None:
            return PartyStatus.declined
        return PartyStatus.viewed if self.viewed_at is not None else PartyStatus.pending

    @property
    def is_municipality(self) -> bool:
        return self.organisation_id is None

    def audit_snapshot(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# --- schemas -----------------------------------------------------------------------------------------


def _distinct_ids(value: list[int] | None) -> list[int] | None:
    if value is not None and len(set(value)) != len(value):
        raise ValueError("An organisation may be a party only once.")
    return value


class MemorandumCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    template: str = Field(description="The memorandum kind, e.g. `logistics_support`.")
    language: Language = Language.bg
    partner_ids: list[Id] = Field(min_length=1, max_length=20, description="The partner organisations, in order.")
    variables: dict[str, Any] = Field(default_factory=dict, description="The template's declared variables.")
    sequential: bool = Field(default=False, description="Parties sign in order (partners first, then us).")
    signing_deadline: date
    valid_from: date
    valid_until: date

    _distinct = field_validator("partner_ids")(_distinct_ids)


class MemorandumUpdate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    partner_ids: list[Id] | None = Field(default=None, min_length=1, max_length=20)
    variables: dict[str, Any] | None = None
    sequential: bool | None = None
    signing_deadline: date | None = None
    valid_from: date | None = None
    valid_until: date | None = None

    _distinct = field_validator("partner_ids")(_distinct_ids)


class SignatureCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    organisation_id: Id | None = Field(
        default=None, description="Staff only: the party signing; omit for the municipality."
    )
    signer_name: PersonName
    signer_title: PersonName


class DeclineBody(SQLModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason
    organisation_id: Id | None = Field(default=None, description="Staff only: the party declining.")


class ReasonBody(SQLModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


class PartyPublic(SQLModel):
    organisation_id: int | None
    position: int
    name: str
    registration_number: str | None
    representative_name: str
    representative_title: str
    status: PartyStatus
    viewed_at: datetime | None
    signed_at: datetime | None
    signer_name: str | None
    signer_title: str | None
    method: SignatureMethod | None
    scan_sha256: str | None
    declined_at: datetime | None
    decline_reason: str | None


class MemorandumPublic(SQLModel):
    id: int
    template: str
    template_version: str
    language: Language
    partner_ids: list[int]
    variables: dict[str, Any]
    sequential: bool
    signing_deadline: date
    valid_from: date
    valid_until: date
    status: MemorandumStatus
    status_reason: str | None
    sha256: str | None
    signed_sha256: str | None
    verification_code: str | None
    verify_url: str | None
    supersedes_id: int | None
    superseded_by_id: int | None
    created_at: datetime
    issued_at: datetime | None
    activated_at: datetime | None
    parties: list[PartyPublic]


class VariablePublic(SQLModel):
    name: str
    type: str
    required: bool
    label: str
    help: str
    default: Any = None
    options: list[dict[str, str]] = []


class TemplatePublic(SQLModel):
    template: str
    language: Language
    title: str
    version: str
    variables: list[VariablePublic]
