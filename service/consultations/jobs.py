"""Scheduled work on consultations: closing them at their closing time."""

from service.consultations import service
from service.db import session_scope
from service.scheduler import Job, job_engine


def close_due() -> None:
    """Open consultations whose closing time has passed are closed: no submission is taken after it."""
    with session_scope(job_engine(), write=True) as session:
        service.close_due(session=session)


JOBS = [Job(id="consultations.close_due", func=close_due, every_seconds=lambda: 60)]
