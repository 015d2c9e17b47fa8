"""A partner's pledge through the API on PostgreSQL, in two round trips to the database.

The route a surge hits hardest. Through the ORM a pledge took six round trips (BEGIN, the token, the need
under its lock, the pledge's INSERT, the audit entry's, COMMIT) and about as much of the app's CPU in
SQLAlchemy's unit of work and result handling as in all the rest, while PostgreSQL, the load and the app
share the machine. Here the same statements go to psycopg directly, in two pipelines: who asks and the
need under its lock with its live total and the new pledge's id; then the pledge, its audit entry and
COMMIT. The checks are the service's own (`check_pledge_times`, `check_new_pledge`); the statements are
SQLAlchemy's, compiled once, and every value passes through its column's type as SQLAlchemy would pass it.

Only the common case comes here: a partner user's bearer token, pledging for their own organisation.
Anything else (staff naming an organisation, a token that is not a live partner's, SQLite) is left to
`service.create_pledge`, which answers it as before (401, 403, …).
"""

from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlmodel import Session

from service import audit
from service.auth import LIVE_TOKEN, token_digest
from service.db import utcnow
from service.emergencies import service
from service.emergencies.models import EmergencyStatus, Need, NeedStatus, Pledge, PledgeCreate, PledgeStatus
from service.errors import NotFound
from service.partners.models import Organisation
from service.users.models import STAFF_ROLES, AuthToken, Role, User

_POSTGRESQL = psycopg_dialect()


class _Statement:
    """A Core statement compiled once for PostgreSQL and run on psycopg directly: its parameters and
    results converted by the columns' types, as SQLAlchemy converts them."""

    def __init__(self, statement: Any, **compile_kwargs: Any) -> None:
        self.compiled = statement.compile(dialect=_POSTGRESQL, **compile_kwargs)
        self.sql = str(self.compiled)
        self._binds = {name: bind.type.bind_processor(_POSTGRESQL) for name, bind in self.compiled.binds.items()}
        columns = statement.selected_columns if isinstance(statement, sa.Select) else []
        self._results = [column.type.result_processor(_POSTGRESQL, None) for column in columns]

    def params(self, values: dict[str, Any]) -> dict[str, Any]:
        params = self.compiled.construct_params(values)
        for name, process in self._binds.items():
            if process is not None and params.get(name) is not None:
                params[name] = process(params[name])
        return params

    def row(self, row: tuple | None) -> tuple | None:
        if row is None:
            return None
        return tuple(
            value if process is None else process(value) for process, value in zip(self._results, row, strict=True)
        )


# Who asks: the same conditions as any login by token (service.auth), only the columns a pledge needs.
_WHO = _Statement(
    sa.select(User.id, User.email, User.roles, User.is_active, User.organisation_id, Organisation.verification_status)
    .join(AuthToken, AuthToken.user_id == User.id)
    .outerjoin(Organisation, Organisation.id == User.organisation_id)
    .where(*LIVE_TOKEN)
)
# The need under its row lock, its emergency's status and its live total counted once the lock is granted
# (the service's own statement, see service._LOCKED), and the id the new pledge will have.
_NEED = _Statement(
    sa.select(
        service.LOCKED_FOR_PLEDGE.c.status,
        service.LOCKED_FOR_PLEDGE.c.unit,
        service.LOCKED_FOR_PLEDGE.c.quantity,
        service.LOCKED_FOR_PLEDGE.c.emergency_status,
        service.LIVE_TOTAL,
        sa.func.nextval(sa.func.pg_get_serial_sequence(Pledge.__tablename__, "id")),
    )
)
_PLEDGE_COLUMNS = [column.name for column in Pledge.__table__.columns]
_INSERT_PLEDGE = _Statement(sa.insert(Pledge.__table__).inline(), column_keys=_PLEDGE_COLUMNS)
_SOURCE = "a partner's pledge (service/emergencies/intake.py)"
_INSERT_ENTRY = _Statement(sa.insert(audit.PendingAuditEntry.__table__).inline(), column_keys=audit.PENDING_COLUMNS)


def partner_pledge(session: Session, raw_token: str | None, need_id: int, data: PledgeCreate) -> Pledge | None:
    """The pledge made, or None when this is not a partner's own pledge on PostgreSQL (nothing was changed:
    `service.create_pledge` answers it). Refusals raise as `service.create_pledge` raises them."""
    if raw_token is None or data.organisation_id is not None or session.get_bind().dialect.name != "postgresql":
        return None
    service.check_pledge_times(data)
    now = utcnow()
    engine = session.get_bind()
    # A connection of the session's pool (checked as the pool checks it), used past the ORM; the session
    # itself is left untouched for `service.create_pledge` if this is not for here.
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        try:
            with raw.pipeline():
                who = raw.execute(_WHO.sql, _WHO.params({"digest": token_digest(raw_token), "kind": "api", "now": now}))
                locked = raw.execute(_NEED.sql, _NEED.params({"need_id": need_id}))
            who, locked = _WHO.row(who.fetchone()), _NEED.row(locked.fetchone())
            if who is None or not _plain_partner(*who[2:5]):
                raw.rollback()
                return None
            actor_id, actor, _, _, organisation_id, verification_status = who
            if locked is None or (locked[0], locked[3]) != (NeedStatus.open, EmergencyStatus.active):
                raise NotFound(service.NO_SUCH_NEED)  # as a partner sees it (service.create_pledge's only_open)
            status, unit, quantity, emergency_status, pledged, pledge_id = locked
            need = Need.model_construct(id=need_id, status=status, unit=unit, quantity=quantity)
            service.check_new_pledge(need, emergency_status, verification_status, data.quantity, pledged)
            pledge = _new_pledge(pledge_id, need_id, organisation_id, actor_id, data, now)
            entry = audit.pending_entry(
                at=now,
                actor_id=actor_id,
                actor=actor,
                action="pledge.create",
                entity=pledge,
                after=audit.snapshot(pledge),
            )
            with raw.pipeline():
                raw.execute(_INSERT_PLEDGE.sql, _INSERT_PLEDGE.params({c: getattr(pledge, c) for c in _PLEDGE_COLUMNS}))
                raw.execute(_INSERT_ENTRY.sql, _INSERT_ENTRY.params(entry))
                raw.commit()
            return pledge
        except psycopg.Error as error:
            # Raised as SQLAlchemy raises it: the app answers a DataError with 422, a timeout with 503.
            if raw.broken or engine.dialect.is_disconnect(error, raw, None):
                connection.invalidate()
            else:
                raw.rollback()
            raise sa.exc.DBAPIError.instance(_SOURCE, None, error, psycopg.Error) from error
        except BaseException:
            raw.rollback()
            raise


def _plain_partner(roles: list[str], is_active: bool, organisation_id: int | None) -> bool:
    """A live partner user of an organisation, holding no staff role (staff pledge for the one they name)."""
    return is_active and Role.partner in roles and organisation_id is not None and not STAFF_ROLES & set(roles)


def _new_pledge(
    pledge_id: int, need_id: int, organisation_id: int, actor_id: int, data: PledgeCreate, now: datetime
) -> Pledge:
    """The pledge as `service.create_pledge` makes it (its audit snapshot the same), built without the
    ORM's validation and instrumentation: every value is one the request's model already checked."""
    given = {
        "id": pledge_id,
        "need_id": need_id,
        "organisation_id": organisation_id,
        "quantity": data.quantity,
        "available_from": data.available_from,
        "deliver_by": data.deliver_by,
        "note": data.note,
        "status": PledgeStatus.offered,
        "created_at": now,
        "created_by_id": actor_id,
    }
    return Pledge.model_construct(**{column: given.get(column) for column in _PLEDGE_COLUMNS})
