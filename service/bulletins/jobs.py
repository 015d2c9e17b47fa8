"""Scheduled work on public updates: publishing scheduled updates on time, and keeping the static mirror whole."""

from service.bulletins import mirror, service
from service.config import settings
from service.db import session_scope
from service.scheduler import Job, job_engine


def publish_scheduled() -> None:
    """Publishes the updates whose time has come; a cheap read when none is due (it runs every few seconds)."""
    engine = job_engine()
    with session_scope(engine) as reader:
        if not reader.exec(service.due_query()).first():
            return
    with session_scope(engine, write=True) as session:
        service.publish_due(session=session)


def rebuild_mirror() -> None:
    """Rewrites the whole static mirror: repairs a file lost or a change whose mirror write failed."""
    mirror.refresh(job_engine())


JOBS = [
    Job(id="bulletins.publish_scheduled", func=publish_scheduled, every_seconds=lambda: settings.publish_check_seconds),
    Job(id="bulletins.rebuild_mirror", func=rebuild_mirror, every_seconds=lambda: 600),
]
