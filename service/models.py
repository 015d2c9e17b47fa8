"""Every table, imported in one place so the metadata (and Alembic) sees them all."""

from service.audit import AuditEntry
from service.bulletins.models import Bulletin, BulletinRevision, Rumour
from service.consultations.models import Consultation, Decision, DecisionVote, Invitation, Submission
from service.emergencies.models import Emergency, Need, Offer, Pledge, Receipt
from service.memoranda.models import Memorandum, MemorandumParty
from service.notifications.models import OutboxMessage
from service.partners.models import Contact, Organisation, OrganisationSector
from service.scheduler import SchedulerLock
from service.users.models import AuthToken, User

__all__ = [
    "AuditEntry",
    "AuthToken",
    "Bulletin",
    "BulletinRevision",
    "Consultation",
    "Contact",
    "Decision",
    "DecisionVote",
    "Emergency",
    "Invitation",
    "Memorandum",
    "MemorandumParty",
    "Need",
    "Offer",
    "Organisation",
    "OrganisationSector",
    "OutboxMessage",
    "Pledge",
    "Receipt",
    "Rumour",
    "SchedulerLock",
    "Submission",
    "User",
]
