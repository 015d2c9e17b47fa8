"""Scheduled work on pledges: expiring offers nobody took up, flagging late deliveries."""

from service.db import session_scope
from service.emergencies import service
from service.scheduler import Job, job_engine


def expire_pledges() -> None:
    """Pledges still offered when their deliver-by passed become expired."""
    with session_scope(job_engine(), write=True) as session:
        service.expire_offered_pledges(session=session)


def overdue_pledges() -> None:
    """Accepted pledges past deliver-by with nothing received are flagged; partners reminded once a day."""
    with session_scope(job_engine(), write=True) as session:
        service.flag_overdue(session=session)


JOBS = [
    Job(id="emergencies.expire_pledges", func=expire_pledges, every_seconds=lambda: 300),
    Job(id="emergencies.overdue_pledges", func=overdue_pledges, every_seconds=lambda: 900),
]
