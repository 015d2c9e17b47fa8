"""Consultations, the positions organisations submit, and the decisions recorded with each stakeholder's vote."""

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

import sqlalchemy as sa
from pydantic import AfterValidator, AwareDatetime, ConfigDict, StringConstraints
from sqlmodel import Field, SQLModel

from service.db import EnumText, Id, UTCDateTime, utcnow
from service.i18n import N_


class ConsultationStatus(StrEnum):
    draft = "draft"
    open = "open"  # invitations sent; submissions accepted from opens_at until closes_at
    closed = "closed"
    decided = "decided"  # a decision is recorded (published or not)


class Position(StrEnum):
    support = "support"
    oppose = "oppose"
    amend = "amend"


class Vote(StrEnum):
    for_ = "for"
    against = "against"
    abstain = "abstain"


STATUS_LABELS = {
    ConsultationStatus.draft: N_("Draft"),
    ConsultationStatus.open: N_("Open"),
    ConsultationStatus.closed: N_("Closed"),
    ConsultationStatus.decided: N_("Decided"),
}
POSITION_LABELS = {
    Position.support: N_("Support"),
    Position.oppose: N_("Oppose"),
    Position.amend: N_("Support with amendments"),
}
VOTE_LABELS = {Vote.for_: N_("For"), Vote.against: N_("Against"), Vote.abstain: N_("Abstained")}

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=20_000)]
Comments = Annotated[str, StringConstraints(strip_whitespace=True, max_length=20_000)]


def _storable(value: datetime) -> datetime:
    # Years 1 and 9999 overflow when converted to UTC or local time: a 500 when stored or shown.
    if not 1 < value.year < 9999:
        raise ValueError("The year must be between 2 and 9998.")
    return value


Moment = Annotated[AwareDatetime, AfterValidator(_storable)]


class Consultation(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    question: str = Field(sa_type=sa.Text)
    measures: str = Field(sa_type=sa.Text)  # Markdown
    emergency_id: int | None = Field(default=None, foreign_key="emergency.id", index=True)
    opens_at: datetime = Field(sa_type=UTCDateTime)
    closes_at: datetime = Field(sa_type=UTCDateTime, index=True)
    open_to_all: bool = False  # every verified partner may take part, not only the invited
    status: ConsultationStatus = Field(
        default=ConsultationStatus.draft, sa_type=EnumText(ConsultationStatus, 10), index=True
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    opened_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Invitation(SQLModel, table=True):
    __tablename__ = "consultation_invitation"

    consultation_id: int = Field(foreign_key="consultation.id", primary_key=True)
    organisation_id: int = Field(foreign_key="organisation.id", primary_key=True, index=True)


class Submission(SQLModel, table=True):
    """One organisation's position in one consultation, revised in place until it closes."""

    __table_args__ = (sa.UniqueConstraint("consultation_id", "organisation_id"),)

    id: int | None = Field(default=None, primary_key=True)
    consultation_id: int = Field(foreign_key="consultation.id", index=True)
    organisation_id: int = Field(foreign_key="organisation.id", index=True)
    position: Position = Field(sa_type=EnumText(Position, 10))
    comments: str = Field(default="", sa_type=sa.Text)
    public: bool = False  # the organisation agrees that it is published with the decision
    attachment_sha256: str | None = Field(default=None, max_length=64)
    attachment_name: str | None = Field(default=None, max_length=200)
    attachment_size: int | None = None
    submitted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    submitted_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revision: int = 1


class Decision(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    consultation_id: int = Field(foreign_key="consultation.id", unique=True)
    text: str = Field(sa_type=sa.Text)  # Markdown
    decided_on: date
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    recorded_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    # The consultation's title and question and the decision's text, case-folded: searched the same way on
    # SQLite and PostgreSQL, whatever their collation does with Cyrillic.
    search_text: str = Field(default="", sa_type=sa.Text)


class DecisionVote(SQLModel, table=True):
    __tablename__ = "decision_vote"

    decision_id: int = Field(foreign_key="decision.id", primary_key=True)
    organisation_id: int = Field(foreign_key="organisation.id", primary_key=True)
    vote: Vote = Field(sa_type=EnumText(Vote, 10))


# --- schemas ---------------------------------------------------------------------------------------------


class ConsultationCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    question: LongText
    measures: LongText
    emergency_id: Id | None = None
    opens_at: Moment
    closes_at: Moment
    invited_ids: list[Id] = Field(default_factory=list, max_length=1000)
    open_to_all: bool = False


class ConsultationUpdate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    question: LongText | None = None
    measures: LongText | None = None
    emergency_id: Id | None = None
    opens_at: Moment | None = None
    closes_at: Moment | None = None
    invited_ids: list[Id] | None = Field(default=None, max_length=1000)
    open_to_all: bool | None = None


class ConsultationPublic(SQLModel):
    id: int
    title: str
    question: str
    measures: str
    emergency_id: int | None
    opens_at: datetime
    closes_at: datetime
    open_to_all: bool
    invited_ids: list[int]
    status: ConsultationStatus
    accepting: bool  # whether a submission would be taken now
    created_at: datetime
    opened_at: datetime | None
    closed_at: datetime | None


class SubmissionCreate(SQLModel):
    """A partner user's position, for their own organisation."""

    model_config = ConfigDict(extra="forbid")

    position: Position
    comments: Comments = ""
    public: bool = False


class SubmissionPublic(SQLModel):
    id: int
    consultation_id: int
    organisation_id: int
    position: Position
    comments: str
    public: bool
    attachment_sha256: str | None
    attachment_name: str | None
    attachment_size: int | None
    submitted_at: datetime
    updated_at: datetime
    revision: int


class VoteIn(SQLModel):
    model_config = ConfigDict(extra="forbid")

    organisation_id: Id
    vote: Vote


class DecisionCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")

    text: LongText
    decided_on: date
    votes: list[VoteIn] = Field(default_factory=list, max_length=1000)


class DecisionPublic(SQLModel):
    id: int
    consultation_id: int
    text: str
    decided_on: date
    votes: list[VoteIn]
    tally: dict[str, int]
    recorded_at: datetime
    published_at: datetime | None
