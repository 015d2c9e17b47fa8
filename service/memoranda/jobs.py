"""Scheduled work on memoranda: expiry, reminders before they end and to sign, and final PDFs a crash left unmade.

Each job opens its own sessions and calls the service; the service records what it did, so a second run (a
restart, a missed tick made up) sends and changes nothing.
"""

import logging

from service.db import session_scope
from service.memoranda import service
from service.scheduler import Job, job_engine

log = logging.getLogger("accord.memoranda")


def expire() -> None:
    """Memoranda in force whose valid-until has passed become expired."""
    with session_scope(job_engine(), write=True) as session:
        service.expire_due(session=session)


def expiry_reminders() -> None:
    """The parties of a memorandum in force are told 30 and 7 days before it ends."""
    with session_scope(job_engine(), write=True) as session:
        service.remind_expiring(session=session)


def signing_reminders() -> None:
    """Unsigned parties are reminded as the signing deadline nears; staff are told once when it has passed."""
    with session_scope(job_engine(), write=True) as session:
        service.remind_unsigned(session=session)


def finalise() -> None:
    """Makes the signed PDF of every memorandum that came into force and has none.

    Rendering takes seconds, so it reads from a plain session and only the recording is a (short) write.
    One memorandum that fails is logged and tried again on the next run; the others go on.
    """
    engine = job_engine()
    with session_scope(engine) as reader:
        waiting = service.awaiting_final_pdf(session=reader)
    for memorandum_id in waiting:
        try:
            with session_scope(engine) as reader:
                pdf = service.final_pdf(
                    session=reader, memorandum=service.get(session=reader, memorandum_id=memorandum_id)
                )
            with session_scope(engine, write=True) as writer:
                service.record_final(session=writer, memorandum_id=memorandum_id, pdf=pdf)
        except Exception:
            log.exception("The final PDF of memorandum %s was not made; the next run tries again", memorandum_id)


JOBS = [
    Job(id="memoranda.expire", func=expire, every_seconds=lambda: 3600),
    Job(id="memoranda.expiry_reminders", func=expiry_reminders, every_seconds=lambda: 3600),
    Job(id="memoranda.signing_reminders", func=signing_reminders, every_seconds=lambda: 3600),
    Job(id="memoranda.finalise", func=finalise, every_seconds=lambda: 300),
]
