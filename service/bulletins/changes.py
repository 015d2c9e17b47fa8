"""What the public sees has changed: listeners (the public pages' cache, the static mirror) hear of it
once the change is committed, never before and never for a rolled-back one.

Service functions call `mark()`; emergencies mark too, since the public home lists the active ones.
"""

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

log = logging.getLogger("accord.public")

_PENDING = "accord_public_changes"
ALL = 0  # "everything may have changed"; otherwise a bulletin's id, or:
SHARED = -1  # only what every page lists (the home, the fact-checks, the feeds) changed
Listener = Callable[[Engine, frozenset[int]], None]
_listeners: list[Listener] = []


def mark(session: Session, bulletin_id: int | None = None) -> None:
    """Notes that the public view changes with this session's commit (for one bulletin, or in general)."""
    session.info.setdefault(_PENDING, set()).add(bulletin_id or ALL)


def mark_shared(session: Session) -> None:
    """Notes that only the lists change (an emergency declared or ended, a rumour's verdict)."""
    session.info.setdefault(_PENDING, set()).add(SHARED)


def listen(listener: Listener) -> Listener:
    _listeners.append(listener)
    return listener


def notify(engine: Engine, changed: frozenset[int]) -> None:
    for listener in _listeners:
        try:
            listener(engine, changed)
        except Exception:  # the change is committed; a listener's failure must not turn it into an error
            log.exception("a listener of public changes failed (%s)", getattr(listener, "__name__", listener))


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    changed = session.info.pop(_PENDING, None)
    if changed:
        # The mirror (and the page cache it clears) listens in every process that changes what the
        # public sees: the app, the scheduler, `accord demo-data`. Imported here, on first use, as it
        # renders pages with everything that entails.
        from service.bulletins import mirror  # noqa: F401

        # A reader's engine: the listeners only read, and must not queue behind writers.
        notify(session.get_bind().execution_options(accord_write=False), frozenset(changed))


@event.listens_for(Session, "after_rollback")
def _discarded(session: Session) -> None:
    session.info.pop(_PENDING, None)
