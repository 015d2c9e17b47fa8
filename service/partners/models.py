"""Partner organisations, their sectors and their contacts, with the schemas the API and forms take."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import AfterValidator, ConfigDict, EmailStr, HttpUrl, StringConstraints, UrlConstraints
from sqlmodel import Field, Relationship, SQLModel

from service.db import EnumText, UTCDateTime, utcnow
from service.i18n import N_
from service.partners.registration import normalise_registration_number


class OrganisationKind(StrEnum):
    ngo = "ngo"
    business = "business"
    professional_association = "professional_association"
    public_body = "public_body"
    volunteer_group = "volunteer_group"
    media = "media"
    other = "other"


class Sector(StrEnum):
    food = "food"
    water = "water"
    medical = "medical"
    shelter = "shelter"
    transport = "transport"
    fuel = "fuel"
    power = "power"
    communications = "communications"
    volunteers = "volunteers"
    funding = "funding"
    information = "information"
    other = "other"


class VerificationStatus(StrEnum):
    pending = "pending"
    verified = "verified"
    suspended = "suspended"


KIND_LABELS = {
    OrganisationKind.ngo: N_("NGO / civic group"),
    OrganisationKind.business: N_("Business"),
    OrganisationKind.professional_association: N_("Professional association"),
    OrganisationKind.public_body: N_("Public body"),
    OrganisationKind.volunteer_group: N_("Volunteer formation"),
    OrganisationKind.media: N_("Media"),
    OrganisationKind.other: N_("Other kind"),
}
SECTOR_LABELS = {
    Sector.food: N_("Food"),
    Sector.water: N_("Water"),
    Sector.medical: N_("Medical"),
    Sector.shelter: N_("Shelter"),
    Sector.transport: N_("Transport"),
    Sector.fuel: N_("Fuel"),
    Sector.power: N_("Power"),
    Sector.communications: N_("Communications"),
    Sector.volunteers: N_("Volunteers"),
    Sector.funding: N_("Funding"),
    Sector.information: N_("Information"),
    Sector.other: N_("Other"),
}
VERIFICATION_LABELS = {
    VerificationStatus.pending: N_("Pending verification"),
    VerificationStatus.verified: N_("Verified"),
    VerificationStatus.suspended: N_("Suspended"),
}

Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)]
OrgName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=300)]
PersonName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, max_length=40, pattern=r"^[0-9+()\-./ ]*$")]
RegistrationNumber = Annotated[str, AfterValidator(normalise_registration_number)]


def _storable_url(url: HttpUrl) -> HttpUrl:
    # The limit applies to the normalised address that is stored (a trailing slash, an IDN in punycode).
    if len(str(url)) > 300:
        raise ValueError("The address is too long: at most 300 characters.")
    return url


Website = Annotated[
    HttpUrl, UrlConstraints(max_length=300, allowed_schemes=["http", "https"]), AfterValidator(_storable_url)
]


class OrganisationSector(SQLModel, table=True):
    __tablename__ = "organisation_sector"

    organisation_id: int = Field(foreign_key="organisation.id", primary_key=True, ondelete="CASCADE")
    sector: Sector = Field(primary_key=True, sa_type=EnumText(Sector, 20), index=True)


class OrganisationBase(SQLModel):
    name: str = Field(max_length=300)
    name_en: str | None = Field(default=None, max_length=300)
    kind: OrganisationKind = Field(sa_type=EnumText(OrganisationKind, 30))
    registration_number: str | None = Field(default=None, max_length=13, sa_column_kwargs={"unique": True})
    capabilities: str = Field(default="", sa_type=sa.Text)
    address: str = Field(default="", max_length=500)
    service_area: str = Field(default="", max_length=500)
    website: str | None = Field(default=None, max_length=300)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=40)


class Organisation(OrganisationBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    verification_status: VerificationStatus = Field(
        default=VerificationStatus.pending, sa_type=EnumText(VerificationStatus, 20), index=True
    )
    verified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The verifier's user id, kept without a foreign key: users also point at organisations, and
    # the audit log holds who did what in any case.
    verified_by_id: int | None = Field(default=None)
    suspended_reason: str | None = Field(default=None, max_length=500)
    reverification_reminded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Case-folded name, English name and number: SQLite's LIKE folds only ASCII, so search uses this.
    search_text: str = Field(default="", max_length=700, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    sector_rows: list[OrganisationSector] = Relationship(
        cascade_delete=True, sa_relationship_kwargs={"lazy": "selectin", "order_by": "OrganisationSector.sector"}
    )
    contacts: list["Contact"] = Relationship(
        back_populates="organisation",
        cascade_delete=True,
        sa_relationship_kwargs={"order_by": "(Contact.is_primary.desc(), Contact.id)"},
    )

    @property
    def sectors(self) -> list[Sector]:
        return [row.sector for row in self.sector_rows]

    def audit_snapshot(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"search_text"})
        data["sectors"] = [str(s) for s in self.sectors]
        return data


class _OrganisationFields(SQLModel):
    """Shared validation of what a person may type about an organisation."""

    model_config = ConfigDict(extra="forbid")

    name_en: OrgName | None = None
    capabilities: LongText = ""
    address: Text = ""
    service_area: Text = ""
    website: Website | None = None
    email: EmailStr | None = None
    phone: Phone | None = None
    sectors: list[Sector] = Field(default_factory=list, max_length=len(Sector))


class OrganisationCreate(_OrganisationFields):
    name: OrgName
    kind: OrganisationKind
    registration_number: RegistrationNumber | None = None


class OrganisationUpdate(SQLModel):
    """What staff may change; every field optional."""

    model_config = ConfigDict(extra="forbid")

    name: OrgName | None = None
    name_en: OrgName | None = None
    kind: OrganisationKind | None = None
    registration_number: RegistrationNumber | None = None
    capabilities: LongText | None = None
    address: Text | None = None
    service_area: Text | None = None
    website: Website | None = None
    email: EmailStr | None = None
    phone: Phone | None = None
    sectors: list[Sector] | None = Field(default=None, max_length=len(Sector))


class OrganisationProfileUpdate(SQLModel):
    """What a partner may change of their own organisation: not its identity or verification."""

    model_config = ConfigDict(extra="forbid")

    name_en: OrgName | None = None
    capabilities: LongText | None = None
    address: Text | None = None
    service_area: Text | None = None
    website: Website | None = None
    email: EmailStr | None = None
    phone: Phone | None = None
    sectors: list[Sector] | None = Field(default=None, max_length=len(Sector))


class ContactBase(SQLModel):
    full_name: str = Field(max_length=200)
    role: str = Field(default="", max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=254)
    is_primary: bool = False
    available_24_7: bool = False


class Contact(ContactBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    organisation_id: int = Field(foreign_key="organisation.id", index=True, ondelete="CASCADE")
    organisation: Organisation = Relationship(back_populates="contacts")


class ContactCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    full_name: PersonName
    role: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""
    phone: Phone | None = None
    email: EmailStr | None = None
    is_primary: bool = False
    available_24_7: bool = False


class ContactUpdate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    full_name: PersonName | None = None
    role: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    phone: Phone | None = None
    email: EmailStr | None = None
    is_primary: bool | None = None
    available_24_7: bool | None = None


class ContactPublic(ContactBase):
    id: int
    organisation_id: int


class OrganisationPublic(OrganisationBase):
    id: int
    sectors: list[Sector]
    verification_status: VerificationStatus
    verified_at: datetime | None
    verified_by_id: int | None
    suspended_reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, org: Organisation) -> "OrganisationPublic":
        return cls.model_validate({**org.model_dump(), "sectors": org.sectors})


class SuspendRequest(SQLModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]
