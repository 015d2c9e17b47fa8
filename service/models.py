"""Every table, imported in one place so the metadata (and Alembic) sees them all."""

from service.audit import AuditEntry
from service.notifications.models import OutboxMessage
from service.partners.models import Contact, Organisation, OrganisationSector
from service.scheduler import SchedulerLock
from service.users.models import AuthToken, User

__all__ = [
    "AuditEntry",
    "AuthToken",
    "Contact",
    "Organisation",
    "OrganisationSector",
    "OutboxMessage",
    "SchedulerLock",
    "User",
]
