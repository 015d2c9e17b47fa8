"""Scheduled delivery of the outbox."""

from service.config import settings
from service.db import session_scope
from service.notifications import service
from service.scheduler import Job, job_engine


def send_outbox() -> None:
    """Sends due e-mail from the outbox."""
    with session_scope(job_engine(), write=True) as session:
        service.send_due(session=session, settings=settings)


JOBS = [Job(id="notifications.send_outbox", func=send_outbox, every_seconds=lambda: settings.outbox_interval_seconds)]
