"""Scheduled work of the partner registry."""

from service.config import settings
from service.db import session_scope
from service.partners import service
from service.scheduler import Job, job_engine


def reverification_reminders() -> None:
    """Reminds staff of organisations whose verification is over a year old."""
    with session_scope(job_engine(), write=True) as session:
        service.remind_reverification(
            session=session, older_than_days=settings.reverification_days, base_url=settings.base_url
        )


JOBS = [Job(id="partners.reverification_reminders", func=reverification_reminders, every_seconds=lambda: 6 * 3600)]
