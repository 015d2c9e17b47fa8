"""Emergencies, the needs staff publish, the pledges partners make against them, receipts and offers."""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import AfterValidator, AwareDatetime, ConfigDict, PlainSerializer, StringConstraints
from sqlmodel import Field, SQLModel

from service.db import EnumText, Id, UTCDateTime, utcnow
from service.i18n import N_
from service.partners.models import Sector


class EmergencyKind(StrEnum):
    flood = "flood"
    earthquake = "earthquake"
    wildfire = "wildfire"
    winter_storm = "winter_storm"
    heatwave = "heatwave"
    pandemic = "pandemic"
    industrial_accident = "industrial_accident"
    other = "other"


class Severity(StrEnum):
    minor = "minor"
    moderate = "moderate"
    severe = "severe"
    extreme = "extreme"


class EmergencyStatus(StrEnum):
    active = "active"
    stood_down = "stood_down"
    closed = "closed"


class Unit(StrEnum):
    pcs = "pcs"
    kg = "kg"
    l = "l"  # noqa: E741 (the unit's own symbol)
    box = "box"
    pallet = "pallet"
    person_hours = "person_hours"
    vehicle_days = "vehicle_days"


# Units that come in whole numbers: half a box is not a pledge anyone can deliver.
WHOLE_UNITS = frozenset({Unit.pcs, Unit.box, Unit.pallet})


class Priority(StrEnum):
    critical = "critical"
    high = "high"
    normal = "normal"
    low = "low"


PRIORITY_ORDER = {Priority.critical: 0, Priority.high: 1, Priority.normal: 2, Priority.low: 3}


class NeedStatus(StrEnum):
    draft = "draft"
    open = "open"
    closed = "closed"
    cancelled = "cancelled"


class PledgeStatus(StrEnum):
    offered = "offered"
    accepted = "accepted"
    in_transit = "in_transit"
    delivered = "delivered"
    declined = "declined"
    withdrawn = "withdrawn"
    expired = "expired"
    cancelled = "cancelled"


LIVE_PLEDGE = frozenset({PledgeStatus.offered, PledgeStatus.accepted, PledgeStatus.in_transit, PledgeStatus.delivered})
COMMITTED_PLEDGE = frozenset({PledgeStatus.accepted, PledgeStatus.in_transit, PledgeStatus.delivered})


class OfferStatus(StrEnum):
    offered = "offered"
    converted = "converted"
    declined = "declined"


class Coverage(StrEnum):
    none = "none"
    partial = "partial"
    full = "full"


KIND_LABELS = {
    EmergencyKind.flood: N_("Flood"),
    EmergencyKind.earthquake: N_("Earthquake"),
    EmergencyKind.wildfire: N_("Wildfire"),
    EmergencyKind.winter_storm: N_("Winter storm"),
    EmergencyKind.heatwave: N_("Heatwave"),
    EmergencyKind.pandemic: N_("Pandemic"),
    EmergencyKind.industrial_accident: N_("Industrial accident"),
    EmergencyKind.other: N_("Other emergency"),
}
SEVERITY_LABELS = {
    Severity.minor: N_("Minor"),
    Severity.moderate: N_("Moderate"),
    Severity.severe: N_("Severe"),
    Severity.extreme: N_("Extreme"),
}
EMERGENCY_STATUS_LABELS = {
    EmergencyStatus.active: N_("Active"),
    EmergencyStatus.stood_down: N_("Stood down"),
    EmergencyStatus.closed: N_("Closed"),
}
UNIT_LABELS = {
    Unit.pcs: N_("pcs"),
    Unit.kg: N_("kg"),
    Unit.l: N_("l"),
    Unit.box: N_("boxes"),
    Unit.pallet: N_("pallets"),
    Unit.person_hours: N_("person-hours"),
    Unit.vehicle_days: N_("vehicle-days"),
}
PRIORITY_LABELS = {
    Priority.critical: N_("Critical"),
    Priority.high: N_("High"),
    Priority.normal: N_("Normal"),
    Priority.low: N_("Low"),
}
NEED_STATUS_LABELS = {
    NeedStatus.draft: N_("Draft"),
    NeedStatus.open: N_("Open"),
    NeedStatus.closed: N_("Closed"),
    NeedStatus.cancelled: N_("Cancelled"),
}
PLEDGE_STATUS_LABELS = {
    PledgeStatus.offered: N_("Offered"),
    PledgeStatus.accepted: N_("Accepted"),
    PledgeStatus.in_transit: N_("In transit"),
    PledgeStatus.delivered: N_("Delivered"),
    PledgeStatus.declined: N_("Declined"),
    PledgeStatus.withdrawn: N_("Withdrawn"),
    PledgeStatus.expired: N_("Expired"),
    PledgeStatus.cancelled: N_("Cancelled"),
}
OFFER_STATUS_LABELS = {
    OfferStatus.offered: N_("Awaiting triage"),
    OfferStatus.converted: N_("Turned into a pledge"),
    OfferStatus.declined: N_("Declined"),
}
COVERAGE_LABELS = {Coverage.none: N_("None"), Coverage.partial: N_("Partial"), Coverage.full: N_("Full")}


class QuantityType(sa.types.TypeDecorator):
    """A quantity with up to two decimals, stored exactly as whole hundredths (sums stay exact in SQL)."""

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> int | None:
        return None if value is None else int(Decimal(value) * 100)

    def process_result_value(self, value: int | None, dialect: Any) -> Decimal | None:
        return None if value is None else Decimal(value) / 100


MAX_QUANTITY = Decimal("1000000000")


def _two_decimals(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError(N_("The quantity must be more than zero."))
    if value > MAX_QUANTITY:
        raise ValueError(N_("The quantity is too large."))
    if value != value.quantize(Decimal("0.01")):
        raise ValueError(N_("At most two decimal places."))
    return value.quantize(Decimal("0.01"))


# Read as Decimal (exact), written to JSON as a number.
Quantity = Annotated[
    Decimal, AfterValidator(_two_decimals), PlainSerializer(float, return_type=float, when_used="json")
]
QuantityOut = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Place = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)]


# --- emergencies -----------------------------------------------------------------------------------------


class Emergency(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    kind: EmergencyKind = Field(sa_type=EnumText(EmergencyKind, 30))
    area: str = Field(max_length=300)
    severity: Severity = Field(sa_type=EnumText(Severity, 20))
    description: str = Field(default="", sa_type=sa.Text)
    status: EmergencyStatus = Field(default=EmergencyStatus.active, sa_type=EnumText(EmergencyStatus, 20), index=True)
    declared_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    declared_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    stood_down_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    stood_down_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_by_id: int | None = Field(default=None, foreign_key="user_account.id")


class EmergencyCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    title: ShortText
    kind: EmergencyKind
    area: Place
    severity: Severity
    description: LongText = ""


class EmergencyUpdate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    title: ShortText | None = None
    kind: EmergencyKind | None = None
    area: Place | None = None
    severity: Severity | None = None
    description: LongText | None = None


class EmergencyPublic(SQLModel):
    id: int
    title: str
    kind: EmergencyKind
    area: str
    severity: Severity
    description: str
    status: EmergencyStatus
    declared_at: datetime
    declared_by_id: int | None
    stood_down_at: datetime | None
    closed_at: datetime | None


# --- needs -----------------------------------------------------------------------------------------------


class Need(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    emergency_id: int = Field(foreign_key="emergency.id", index=True)
    item_name: str = Field(max_length=200)
    sector: Sector = Field(sa_type=EnumText(Sector, 20))
    unit: Unit = Field(sa_type=EnumText(Unit, 20))
    quantity: Decimal = Field(sa_type=QuantityType)
    priority: Priority = Field(default=Priority.normal, sa_type=EnumText(Priority, 10))
    deliver_to: str = Field(max_length=300)
    needed_by: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: NeedStatus = Field(default=NeedStatus.draft, sa_type=EnumText(NeedStatus, 10), index=True)
    status_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")


class NeedCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    item_name: ShortText
    sector: Sector
    unit: Unit
    quantity: Quantity
    priority: Priority = Priority.normal
    deliver_to: Place
    needed_by: AwareDatetime | None = None


class NeedUpdate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    item_name: ShortText | None = None
    sector: Sector | None = None
    unit: Unit | None = None
    quantity: Quantity | None = None
    priority: Priority | None = None
    deliver_to: Place | None = None
    needed_by: AwareDatetime | None = None


class NeedPublic(SQLModel):
    id: int
    emergency_id: int
    item_name: str
    sector: Sector
    unit: Unit
    quantity: QuantityOut
    priority: Priority
    deliver_to: str
    needed_by: datetime | None
    status: NeedStatus
    status_reason: str | None
    created_at: datetime
    pledged: QuantityOut
    delivered: QuantityOut
    remaining: QuantityOut
    pledge_coverage: Coverage
    delivery_coverage: Coverage


class ReasonBody(SQLModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


# --- pledges and receipts --------------------------------------------------------------------------------


class Pledge(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    need_id: int = Field(foreign_key="need.id", index=True)
    organisation_id: int = Field(foreign_key="organisation.id", index=True)
    quantity: Decimal = Field(sa_type=QuantityType)
    accepted_quantity: Decimal | None = Field(default=None, sa_type=QuantityType)
    available_from: datetime | None = Field(default=None, sa_type=UTCDateTime)
    deliver_by: datetime = Field(sa_type=UTCDateTime, index=True)
    note: str = Field(default="", max_length=2000)
    status: PledgeStatus = Field(default=PledgeStatus.offered, sa_type=EnumText(PledgeStatus, 12), index=True)
    status_reason: str | None = Field(default=None, max_length=500)
    offer_id: int | None = Field(default=None, foreign_key="offer.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    dispatched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    overdue_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_reminder_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    @property
    def counted(self) -> Decimal:
        """What this pledge counts against its need: the accepted quantity once accepted, else the offer."""
        if self.status not in LIVE_PLEDGE:
            return Decimal(0)
        return self.accepted_quantity if self.status in COMMITTED_PLEDGE else self.quantity


class PledgeCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    quantity: Quantity
    available_from: AwareDatetime | None = None
    deliver_by: AwareDatetime
    note: Note = ""
    organisation_id: Id | None = Field(default=None, description="Staff only: the organisation pledging.")


class AcceptBody(SQLModel):
    model_config = ConfigDict(extra="forbid")

    accepted_quantity: Quantity | None = Field(default=None, description="Less than offered, or omit for all of it.")


class PledgePublic(SQLModel):
    id: int
    need_id: int
    organisation_id: int
    quantity: QuantityOut
    accepted_quantity: QuantityOut | None
    available_from: datetime | None
    deliver_by: datetime
    note: str
    status: PledgeStatus
    status_reason: str | None
    offer_id: int | None
    created_at: datetime
    decided_at: datetime | None
    dispatched_at: datetime | None
    overdue: bool
    delivered: QuantityOut


class Receipt(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    pledge_id: int = Field(foreign_key="pledge.id", index=True)
    quantity: Decimal = Field(sa_type=QuantityType)
    received_at: datetime = Field(sa_type=UTCDateTime)
    received_by: str = Field(default="", max_length=200)
    recorded_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    note: str = Field(default="", max_length=2000)


class ReceiptCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    quantity: Quantity
    received_at: AwareDatetime | None = Field(default=None, description="When it arrived; now if omitted.")
    received_by: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""
    note: Note = ""


class ReceiptPublic(SQLModel):
    id: int
    pledge_id: int
    quantity: QuantityOut
    received_at: datetime
    received_by: str
    recorded_by_id: int | None
    note: str


# --- unsolicited offers ----------------------------------------------------------------------------------


class Offer(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    organisation_id: int = Field(foreign_key="organisation.id", index=True)
    item_name: str = Field(max_length=200)
    sector: Sector = Field(sa_type=EnumText(Sector, 20))
    unit: Unit = Field(sa_type=EnumText(Unit, 20))
    quantity: Decimal = Field(sa_type=QuantityType)
    note: str = Field(default="", max_length=2000)
    status: OfferStatus = Field(default=OfferStatus.offered, sa_type=EnumText(OfferStatus, 10), index=True)
    status_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")


class OfferCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    item_name: ShortText
    sector: Sector
    unit: Unit
    quantity: Quantity
    note: Note = ""
    organisation_id: Id | None = Field(default=None, description="Staff only: the organisation offering.")


class OfferConvert(SQLModel):
    """Staff turn an offer into a pledge against a need (all of it, or part)."""

    model_config = ConfigDict(extra="forbid")

    need_id: Id
    quantity: Quantity | None = None
    deliver_by: AwareDatetime
    available_from: AwareDatetime | None = None


class OfferPublic(SQLModel):
    id: int
    organisation_id: int
    item_name: str
    sector: Sector
    unit: Unit
    quantity: QuantityOut
    note: str
    status: OfferStatus
    status_reason: str | None
    created_at: datetime
