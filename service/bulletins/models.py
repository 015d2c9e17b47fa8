"""Public updates ("bulletins") with their CAP fields and revisions, and the rumours that fact-checks answer."""

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated

import sqlalchemy as sa
from pydantic import AfterValidator, AwareDatetime, ConfigDict, StringConstraints
from sqlmodel import Field, SQLModel

from service.db import EnumText, Id, UTCDateTime, utcnow
from service.i18n import N_
from service.users.models import Language


class BulletinStatus(StrEnum):
    draft = "draft"
    in_review = "in_review"
    scheduled = "scheduled"
    published = "published"
    retracted = "retracted"


PUBLIC_STATUSES = frozenset({BulletinStatus.published, BulletinStatus.retracted})


class BulletinCategory(StrEnum):
    alert = "alert"
    advisory = "advisory"
    service_status = "service_status"
    correction = "correction"
    general = "general"


# The CAP 1.2 code lists, spelled as the standard spells them (clients that speak CAP read them as they are).
class Urgency(StrEnum):
    Immediate = "Immediate"
    Expected = "Expected"
    Future = "Future"
    Past = "Past"
    Unknown = "Unknown"


class CapSeverity(StrEnum):
    Extreme = "Extreme"
    Severe = "Severe"
    Moderate = "Moderate"
    Minor = "Minor"
    Unknown = "Unknown"


class Certainty(StrEnum):
    Observed = "Observed"
    Likely = "Likely"
    Possible = "Possible"
    Unlikely = "Unlikely"
    Unknown = "Unknown"


class CapCategory(StrEnum):
    Geo = "Geo"
    Met = "Met"
    Safety = "Safety"
    Security = "Security"
    Rescue = "Rescue"
    Fire = "Fire"
    Health = "Health"
    Env = "Env"
    Transport = "Transport"
    Infra = "Infra"
    CBRNE = "CBRNE"
    Other = "Other"


class ResponseType(StrEnum):
    Shelter = "Shelter"
    Evacuate = "Evacuate"
    Prepare = "Prepare"
    Execute = "Execute"
    Avoid = "Avoid"
    Monitor = "Monitor"
    Assess = "Assess"
    AllClear = "AllClear"
    None_ = "None"


class RumourStatus(StrEnum):
    new = "new"
    investigating = "investigating"
    resolved = "resolved"  # a verdict is recorded


class Verdict(StrEnum):
    false = "false"
    misleading = "misleading"
    unproven = "unproven"
    true = "true"


class Risk(StrEnum):
    high = "high"
    medium = "medium"
    low = "low"


STATUS_LABELS = {
    BulletinStatus.draft: N_("Draft"),
    BulletinStatus.in_review: N_("In review"),
    BulletinStatus.scheduled: N_("Scheduled"),
    BulletinStatus.published: N_("Published"),
    BulletinStatus.retracted: N_("Retracted"),
}
CATEGORY_LABELS = {
    BulletinCategory.alert: N_("Alert"),
    BulletinCategory.advisory: N_("Advisory"),
    BulletinCategory.service_status: N_("Service status"),
    BulletinCategory.correction: N_("Correction"),
    BulletinCategory.general: N_("General information"),
}
URGENCY_LABELS = {
    Urgency.Immediate: N_("Immediate: act now"),
    Urgency.Expected: N_("Expected: act within the next hour"),
    Urgency.Future: N_("Future: act in the near future"),
    Urgency.Past: N_("Past: no longer needed"),
    Urgency.Unknown: N_("Unknown"),
}
CAP_SEVERITY_LABELS = {
    CapSeverity.Extreme: N_("Extreme"),
    CapSeverity.Severe: N_("Severe"),
    CapSeverity.Moderate: N_("Moderate"),
    CapSeverity.Minor: N_("Minor"),
    CapSeverity.Unknown: N_("Unknown"),
}
CERTAINTY_LABELS = {
    Certainty.Observed: N_("Observed"),
    Certainty.Likely: N_("Likely"),
    Certainty.Possible: N_("Possible"),
    Certainty.Unlikely: N_("Unlikely"),
    Certainty.Unknown: N_("Unknown"),
}
CAP_CATEGORY_LABELS = {
    CapCategory.Geo: N_("Geophysical"),
    CapCategory.Met: N_("Meteorological"),
    CapCategory.Safety: N_("Public safety"),
    CapCategory.Security: N_("Security"),
    CapCategory.Rescue: N_("Rescue and recovery"),
    CapCategory.Fire: N_("Fire"),
    CapCategory.Health: N_("Health"),
    CapCategory.Env: N_("Environment"),
    CapCategory.Transport: N_("Transport"),
    CapCategory.Infra: N_("Infrastructure"),
    CapCategory.CBRNE: N_("Chemical, biological, radiological, nuclear or explosive"),
    CapCategory.Other: N_("Other"),
}
RESPONSE_TYPE_LABELS = {
    ResponseType.Shelter: N_("Take shelter"),
    ResponseType.Evacuate: N_("Evacuate"),
    ResponseType.Prepare: N_("Prepare"),
    ResponseType.Execute: N_("Execute the planned action"),
    ResponseType.Avoid: N_("Avoid the area"),
    ResponseType.Monitor: N_("Follow the information"),
    ResponseType.Assess: N_("Assess the information"),
    ResponseType.AllClear: N_("All clear"),
    ResponseType.None_: N_("No action needed"),
}
RUMOUR_STATUS_LABELS = {
    RumourStatus.new: N_("New"),
    RumourStatus.investigating: N_("Investigating"),
    RumourStatus.resolved: N_("Verdict recorded"),
}
VERDICT_LABELS = {
    Verdict.false: N_("False"),
    Verdict.misleading: N_("Misleading"),
    Verdict.unproven: N_("Unproven"),
    Verdict.true: N_("True"),
}
RISK_LABELS = {Risk.high: N_("High"), Risk.medium: N_("Medium"), Risk.low: N_("Low")}

MAX_BODY = 20_000
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200)]
Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_BODY)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)]
Area = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=300)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]
Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]

_POINT = re.compile(r"^(-?\d{1,2}(?:\.\d+)?),(-?\d{1,3}(?:\.\d+)?)$")


def _polygon(value: str | None) -> str | None:
    """A CAP polygon: at least four `lat,lon` pairs separated by spaces, the first and last the same."""
    if value is None or not value.strip():
        return None
    points = value.split()
    pairs = []
    for point in points:
        match = _POINT.match(point)
        if not match:
            raise ValueError(N_("Write each point as latitude,longitude (WGS 84), separated by spaces."))
        lat, lon = float(match[1]), float(match[2])
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(N_("A latitude lies between -90 and 90 and a longitude between -180 and 180."))
        pairs.append((lat, lon))
    if len(pairs) < 4:
        raise ValueError(N_("A polygon needs at least four points, the last the same as the first."))
    if pairs[0] != pairs[-1]:
        raise ValueError(N_("The polygon must be closed: its last point is the same as its first."))
    return " ".join(points)


Polygon = Annotated[str | None, AfterValidator(_polygon)]


# --- bulletins -------------------------------------------------------------------------------------------


class Bulletin(SQLModel, table=True):
    # Ids are never reused (SQLite reuses a deleted draft's otherwise): the audit log names updates by id.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    body: str = Field(sa_type=sa.Text)  # Markdown; rendered and sanitised on the way out
    language: str = Field(default="bg", max_length=2)
    emergency_id: int | None = Field(default=None, foreign_key="emergency.id", index=True)
    category: BulletinCategory = Field(default=BulletinCategory.general, sa_type=EnumText(BulletinCategory, 20))
    urgency: Urgency = Field(default=Urgency.Unknown, sa_type=EnumText(Urgency, 12))
    severity: CapSeverity = Field(default=CapSeverity.Unknown, sa_type=EnumText(CapSeverity, 12))
    certainty: Certainty = Field(default=Certainty.Unknown, sa_type=EnumText(Certainty, 12))
    cap_category: CapCategory = Field(default=CapCategory.Safety, sa_type=EnumText(CapCategory, 12))
    response_type: ResponseType = Field(default=ResponseType.Monitor, sa_type=EnumText(ResponseType, 12))
    area_desc: str = Field(max_length=300)
    polygon: str | None = Field(default=None, sa_type=sa.Text)
    effective: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires: datetime | None = Field(default=None, sa_type=UTCDateTime)
    instruction: str = Field(default="", sa_type=sa.Text)
    publish_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: BulletinStatus = Field(default=BulletinStatus.draft, sa_type=EnumText(BulletinStatus, 12), index=True)
    revision: int = 0  # the number of the published revision the public sees; 0 before publication
    review_note: str = Field(default="", max_length=500)  # why a reviewer sent it back
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    # Everyone who wrote any of its content: none of them may approve it (four eyes).
    editor_ids: list[int] = Field(default_factory=list, sa_type=sa.JSON)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    submitted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    approved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    approved_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    corrected_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    retracted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    retracted_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    retraction_reason: str = Field(default="", max_length=500)

    @property
    def changed_at(self) -> datetime | None:
        """When the public last saw this update change (publication, correction or retraction)."""
        return self.retracted_at or self.corrected_at or self.published_at


class BulletinRevision(SQLModel, table=True):
    """What the public saw: revision 1 is the published text, each correction adds the next."""

    __tablename__ = "bulletin_revision"
    __table_args__ = (sa.UniqueConstraint("bulletin_id", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    bulletin_id: int = Field(foreign_key="bulletin.id", index=True)
    number: int
    title: str = Field(max_length=200)
    body: str = Field(sa_type=sa.Text)
    instruction: str = Field(default="", sa_type=sa.Text)
    reason: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")


class BulletinCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    body: Body
    language: Language = "bg"
    emergency_id: Id | None = None
    category: BulletinCategory = BulletinCategory.general
    urgency: Urgency = Urgency.Unknown
    severity: CapSeverity = CapSeverity.Unknown
    certainty: Certainty = Certainty.Unknown
    cap_category: CapCategory = CapCategory.Safety
    response_type: ResponseType = ResponseType.Monitor
    area_desc: Area
    polygon: Polygon = None
    effective: AwareDatetime | None = None
    expires: AwareDatetime | None = None
    instruction: Text = ""
    publish_at: AwareDatetime | None = None


class BulletinUpdate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    body: Body | None = None
    language: Language | None = None
    emergency_id: Id | None = None
    category: BulletinCategory | None = None
    urgency: Urgency | None = None
    severity: CapSeverity | None = None
    certainty: Certainty | None = None
    cap_category: CapCategory | None = None
    response_type: ResponseType | None = None
    area_desc: Area | None = None
    polygon: Polygon = None
    effective: AwareDatetime | None = None
    expires: AwareDatetime | None = None
    instruction: Text | None = None
    publish_at: AwareDatetime | None = None


class ApproveBody(SQLModel):
    """`publish_at` in the future schedules the publication; absent, it goes by the draft's own or now."""

    model_config = ConfigDict(extra="forbid")

    publish_at: AwareDatetime | None = None


class ReviewReturn(SQLModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


class CorrectionCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    body: Body
    reason: Reason
    title: Title | None = None
    instruction: Text | None = None


class RetractBody(SQLModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


class RevisionPublic(SQLModel):
    number: int
    title: str
    body: str
    instruction: str
    reason: str
    created_at: datetime


class BulletinPublic(SQLModel):
    """The staff view: every field, whatever the status."""

    id: int
    title: str
    body: str
    language: str
    emergency_id: int | None
    category: BulletinCategory
    urgency: Urgency
    severity: CapSeverity
    certainty: Certainty
    cap_category: CapCategory
    response_type: ResponseType
    area_desc: str
    polygon: str | None
    effective: datetime | None
    expires: datetime | None
    instruction: str
    publish_at: datetime | None
    status: BulletinStatus
    revision: int
    review_note: str
    created_at: datetime
    created_by_id: int | None
    editor_ids: list[int]
    updated_at: datetime
    submitted_at: datetime | None
    approved_at: datetime | None
    approved_by_id: int | None
    published_at: datetime | None
    corrected_at: datetime | None
    retracted_at: datetime | None
    retraction_reason: str


class PublishedUpdate(SQLModel):
    """The public's view of a published or retracted update (`/api/v1/public/updates`)."""

    id: int
    url: str
    cap_url: str
    title: str
    body_html: str
    language: str
    emergency_id: int | None
    category: BulletinCategory
    urgency: Urgency
    severity: CapSeverity
    certainty: Certainty
    area_desc: str
    instruction: str  # plain text
    instruction_html: str  # sanitised HTML of the instruction
    effective: datetime | None
    expires: datetime | None
    status: BulletinStatus
    published_at: datetime
    corrected_at: datetime | None
    retracted_at: datetime | None
    retraction_reason: str
    revision: int


# --- rumours ---------------------------------------------------------------------------------------------


class Rumour(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    wording: str = Field(sa_type=sa.Text)  # exactly as it circulates
    summary: str = Field(default="", max_length=500)
    language: str = Field(default="bg", max_length=2)
    channel: str = Field(max_length=200)  # where it was seen: a social network, a chat group, a place
    url: str | None = Field(default=None, max_length=1000)
    first_seen: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    report_count: int = 1
    risk: Risk = Field(default=Risk.medium, sa_type=EnumText(Risk, 10))
    status: RumourStatus = Field(default=RumourStatus.new, sa_type=EnumText(RumourStatus, 20), index=True)
    verdict: Verdict | None = Field(default=None, sa_type=EnumText(Verdict, 12))
    evidence: str = Field(default="", sa_type=sa.Text)
    response: str = Field(default="", sa_type=sa.Text)
    bulletin_id: int | None = Field(default=None, foreign_key="bulletin.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    verdict_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    verdict_by_id: int | None = Field(default=None, foreign_key="user_account.id")


Wording = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=5000)]
Summary = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
Url = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000, pattern=r"^https?://\S+$")]


class RumourCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    wording: Wording
    summary: Summary = ""
    language: Language = "bg"
    channel: Short
    url: Url | None = None
    first_seen: AwareDatetime | None = None
    last_seen: AwareDatetime | None = None
    report_count: int = Field(default=1, ge=1, le=1_000_000)
    risk: Risk = Risk.medium


class RumourUpdate(SQLModel):
    """Also how an investigation starts (`status: investigating`) and how a response is linked."""

    model_config = ConfigDict(extra="forbid")

    wording: Wording | None = None
    summary: Summary | None = None
    language: Language | None = None
    channel: Short | None = None
    url: Url | None = None
    first_seen: AwareDatetime | None = None
    last_seen: AwareDatetime | None = None
    report_count: int | None = Field(default=None, ge=1, le=1_000_000)
    risk: Risk | None = None
    status: RumourStatus | None = None
    bulletin_id: Id | None = None


class VerdictBody(SQLModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    evidence: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=10_000)]
    response: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=MAX_BODY)]
    bulletin_id: Id | None = None


class RumourPublic(SQLModel):
    id: int
    wording: str
    summary: str
    language: str
    channel: str
    url: str | None
    first_seen: datetime
    last_seen: datetime
    report_count: int
    risk: Risk
    status: RumourStatus
    verdict: Verdict | None
    evidence: str
    response: str
    bulletin_id: int | None
    created_at: datetime
    updated_at: datetime
    verdict_at: datetime | None
