"""A partner's pledge through the API, the quick way: the route a surge hits hardest.

Through the ORM a pledge spent about as much of the app's CPU in SQLAlchemy's unit of work and result
handling as in all the rest, and on PostgreSQL took six round trips (BEGIN, the token, the need under its
lock, the pledge's INSERT, the audit entry's, COMMIT) while PostgreSQL, the load and the app share the
machine. Here the same statements are sent past the ORM: on PostgreSQL to psycopg's asynchronous
connections directly, in the event loop, in two pipelines (who asks, and the need under its lock with its
live total and the new pledge's id; then the pledge, its audit entry and COMMIT); on SQLite one after
another on SQLAlchemy's connection, in the thread pool. The checks are
the service's own (`check_pledge_times`, `check_new_pledge`), the statements SQLAlchemy's, compiled once,
and every value passes through its column's type as SQLAlchemy would pass it.

Only the common case comes here: a partner user's bearer token, pledging for their own organisation.
Anything else (staff naming an organisation, a partner naming one, a token that is not a live partner's)
is left to `service.create_pledge`, which answers it as before (401, 403, …).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from typing import Any, TypeVar

import anyio
import psycopg
import sqlalchemy as sa
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

from service import audit
from service.auth import LIVE_TOKEN, token_digest
from service.db import lent_connection, utcnow
from service.emergencies import service
from service.emergencies.coverage import PLEDGED_OF_NEED
from service.emergencies.models import Emergency, EmergencyStatus, Need, NeedStatus, Pledge, PledgeCreate, PledgeStatus
from service.errors import NotFound
from service.partners.models import Organisation
from service.users.models import STAFF_ROLES, AuthToken, Role, User

_POSTGRESQL = psycopg_dialect()
T = TypeVar("T")


class _Compiled:
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
_WHO = (
    sa.select(User.id, User.email, User.roles, User.is_active, User.organisation_id, Organisation.verification_status)
    .join(AuthToken, AuthToken.user_id == User.id)
    .outerjoin(Organisation, Organisation.id == User.organisation_id)
    .where(*LIVE_TOKEN)
)
# The need's status, unit and quantity, its emergency's status, its live total and the new pledge's id.
# PostgreSQL: the need under its row lock, its total counted once the lock is granted (the service's own
# statement, see service.LOCKED_FOR_PLEDGE), the id from the sequence.
_NEED_ON_POSTGRESQL = sa.select(
    service.LOCKED_FOR_PLEDGE.c.status,
    service.LOCKED_FOR_PLEDGE.c.unit,
    service.LOCKED_FOR_PLEDGE.c.quantity,
    service.LOCKED_FOR_PLEDGE.c.emergency_status,
    service.LIVE_TOTAL,
    sa.func.nextval(sa.func.pg_get_serial_sequence(Pledge.__tablename__, "id")),
)
# SQLite: the writer holds the database from BEGIN, so plain subqueries count what is there, and the id is
# the one SQLite would give the row itself.
_NEED_ON_SQLITE = (
    sa.select(
        Need.status,
        Need.unit,
        Need.quantity,
        Emergency.status,
        PLEDGED_OF_NEED,
        sa.select(sa.func.coalesce(sa.func.max(Pledge.id), 0) + 1).scalar_subquery(),
    )
    .join(Emergency, Emergency.id == Need.emergency_id)
    .where(Need.id == sa.bindparam("need_id"))
)
_PLEDGE_COLUMNS = [column.name for column in Pledge.__table__.columns]
_INSERT_PLEDGE = sa.insert(Pledge.__table__)


def partner_pledge(engine: Engine, raw_token: str | None, need_id: int, data: PledgeCreate) -> Pledge | None:
    """SQLite: the pledge made, or None when this is not a partner's own pledge (nothing was changed:
    `service.create_pledge` answers it). Refusals raise as `service.create_pledge` raises them.

    `engine` writes (the request has its `write_turn`); its pool lends the connection, used past the ORM.
    Its first statement begins a writing transaction (the engine's listener takes this process's writer lock
    and begins IMMEDIATE); closing the connection uncommitted rolls it back."""
    if not _may_be_quick(raw_token, data) or engine.dialect.name != "sqlite":
        return None
    now = utcnow()
    with engine.connect() as connection:
        who = connection.execute(_WHO, _who_asks(raw_token, now)).first()
        locked = connection.execute(_NEED_ON_SQLITE, {"need_id": need_id}).first()
        made = _made(who, locked, need_id, data, now)
        if made is None:
            return None
        pledge, row, entry = made
        connection.execute(_INSERT_PLEDGE, row)
        audit.append_sealed(connection.execute, [entry])  # the app seals the entry, as the sessions do
        connection.commit()
        return pledge


async def partner_pledge_in_loop(
    pool: AsyncConnectionPool, raw_token: str | None, need_id: int, data: PledgeCreate
) -> Pledge | None:
    """PostgreSQL, in the event loop: as `partner_pledge`, on a connection of `pool` (`db.event_loop_pool`).

    Two round trips through psycopg's pipelines: BEGIN and one statement for who asks and the need under
    its lock; then one for the pledge with its audit entry, and COMMIT (the trigger seals the entry then).
    Run in a thread, the pledge's every round trip was a wait for the interpreter's lock, contended by the
    event loop and the other pledges' threads: in the event loop it waits for nothing but the database."""
    if not _may_be_quick(raw_token, data):
        return None
    now = utcnow()
    async with _lent(pool) as lent:
        connection = lent.connection
        async with connection.pipeline():
            cursor = await connection.execute(
                _READ_SQL.sql, _READ_SQL.params({**_who_asks(raw_token, now), "need_id": need_id})
            )
        row = _READ_SQL.row(await cursor.fetchone())
        who, locked = row[:_WHO_WIDTH], row[_WHO_WIDTH:]  # either all NULLs when missing
        made = _made(who if who[0] is not None else None, locked if locked[0] is not None else None, need_id, data, now)
        if made is None:
            return None
        pledge, row, entry = made
        values = {**{f"pledge_{name}": value for name, value in row.items()}, **audit.pending_row(entry)}
        lent.writing = True
        async with connection.pipeline():
            await connection.execute(_INSERT_BOTH_SQL.sql, _INSERT_BOTH_SQL.params(values))
            await connection.commit()
        return pledge


def _may_be_quick(raw_token: str | None, data: PledgeCreate) -> bool:
    """A bearer token, and no organisation named (a partner pledges for their own)."""
    return raw_token is not None and data.organisation_id is None


def _who_asks(raw_token: str, now: datetime) -> dict[str, Any]:
    return {"digest": token_digest(raw_token), "kind": "api", "now": now}


def _made(
    who: Any, locked: Any, need_id: int, data: PledgeCreate, now: datetime
) -> tuple[Pledge, dict[str, Any], dict[str, Any]] | None:
    """The pledge, its row and its audit entry, checked as the service checks them; None when who asks is
    not a live partner user (the service answers them). `who` and `locked` are the read's rows (None when
    missing): `_WHO`'s columns, and the need's status, unit, quantity, emergency's status, live total and
    the new pledge's id."""
    if who is None or not _plain_partner(*who[2:5]):
        return None
    service.check_pledge_times(data)  # after the login, as the service's way checks them
    actor_id, actor, _, _, organisation_id, verification_status = who
    if locked is None or (locked[0], locked[3]) != (NeedStatus.open, EmergencyStatus.active):
        raise NotFound(service.NO_SUCH_NEED)  # as a partner sees it (service.create_pledge's only_open)
    status, unit, quantity, emergency_status, pledged, pledge_id = locked
    need = _built(Need, id=need_id, status=status, unit=unit, quantity=quantity)
    service.check_new_pledge(need, emergency_status, verification_status, data.quantity, pledged)
    pledge = _new_pledge(pledge_id, need_id, organisation_id, actor_id, data, now)
    after = audit.snapshot(pledge)
    entry = audit.entry_row(at=now, actor_id=actor_id, actor=actor, action="pledge.create", entity=pledge, after=after)
    return pledge, {column: getattr(pledge, column) for column in _PLEDGE_COLUMNS}, entry


class _Lent:
    """A connection lent for one pledge, and whether the pledge's write was sent on it."""

    __slots__ = ("connection", "writing")

    def __init__(self, connection: psycopg.AsyncConnection) -> None:
        self.connection, self.writing = connection, False


@asynccontextmanager
async def _lent(pool: AsyncConnectionPool) -> AsyncIterator[_Lent]:
    """A connection of `pool` for one pledge; psycopg's errors raised as SQLAlchemy raises them (the app
    answers a DataError with 422, a lock or statement timeout with 503, as it does for the ORM's).

    A transaction that only read (refused, or not for here) is committed, which changes nothing: psycopg
    answers a rollback by forgetting the connection's prepared statements (DEALLOCATE ALL, a round trip
    more), and PostgreSQL then parses and plans the next five pledges' statements anew; the read's plan
    alone costs more than running it. With one refusal in ten that was most pledges' plans."""
    async with lent_connection(pool) as connection:
        lent = _Lent(connection)
        try:
            yield lent
        except psycopg.Error as error:
            if not (connection.broken or connection.closed):
                with suppress(psycopg.Error):
                    await connection.rollback()
            raise sa.exc.DBAPIError.instance(_SOURCE, None, error, psycopg.Error) from error
        finally:
            if connection.info.transaction_status == TransactionStatus.INTRANS and not lent.writing:
                with anyio.CancelScope(shield=True), suppress(psycopg.Error):  # (a lost one the pool discards)
                    await connection.commit()


_SOURCE = "a partner's pledge (service/emergencies/intake.py)"
# Who asks and the need, in one statement: each a subquery outer-joined to one row, so that either may be
# missing (NULLs) without the other going missing.
_WHO_ROW, _NEED_ROW = _WHO.subquery("who_asks"), _NEED_ON_POSTGRESQL.subquery("the_need")
_READ_SQL = _Compiled(
    sa.select(_WHO_ROW, _NEED_ROW).select_from(
        sa.select(sa.literal_column("1").label("one"))
        .subquery("one")
        .outerjoin(_WHO_ROW, sa.true())
        .outerjoin(_NEED_ROW, sa.true())
    )
)
_WHO_WIDTH = len(_WHO.selected_columns)
# The pledge and its audit entry in one statement (the pledge's INSERT in a WITH): parameters `pledge_<column>`
# and the entry's columns. Inline: no RETURNING.
_PENDING = audit.PendingAuditEntry.__table__
_INSERT_BOTH_SQL = _Compiled(
    sa.insert(_PENDING)
    .values({name: sa.bindparam(name, type_=_PENDING.c[name].type) for name in audit.PENDING_COLUMNS})
    .add_cte(
        _INSERT_PLEDGE.values(
            {c.name: sa.bindparam(f"pledge_{c.name}", type_=c.type) for c in Pledge.__table__.columns}
        ).cte("new_pledge")
    )
    .inline()
)


def _plain_partner(roles: list[str], is_active: bool, organisation_id: int | None) -> bool:
    """A live partner user of an organisation, holding no staff role (staff pledge for the one they name)."""
    return is_active and Role.partner in roles and organisation_id is not None and not STAFF_ROLES & set(roles)


def _new_pledge(
    pledge_id: int, need_id: int, organisation_id: int, actor_id: int, data: PledgeCreate, now: datetime
) -> Pledge:
    """The pledge as `service.create_pledge` makes it (its audit snapshot the same)."""
    return _built(
        Pledge,
        id=pledge_id,
        need_id=need_id,
        organisation_id=organisation_id,
        quantity=data.quantity,
        available_from=data.available_from,
        deliver_by=data.deliver_by,
        note=data.note,
        status=PledgeStatus.offered,
        created_at=now,
        created_by_id=actor_id,
    )


def _built(model: type[T], **values: Any) -> T:
    """A row's model from `values` (None for the rest), without the ORM's validation and instrumentation
    or pydantic's defaults: every value is one the request's model or the database already checked."""
    return model.model_construct(**{column.name: values.get(column.name) for column in model.__table__.columns})
