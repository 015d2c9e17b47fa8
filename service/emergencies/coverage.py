"""Coverage of needs: derived from pledges and receipts, never stored, by one definition.

`coverage_of` is the arithmetic; `counted_quantity` is the SQL form of what a pledge counts against its
need (the accepted quantity once accepted, the offered quantity before, nothing once it is dead), and
`coverage_for` gathers both sums for many needs in two grouped queries, for the board.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Session, col, select

from service.emergencies.models import (
    COMMITTED_PLEDGE,
    Coverage,
    Need,
    Pledge,
    PledgeStatus,
    QuantityType,
    Receipt,
)

ZERO = Decimal(0)


def level(done: Decimal, needed: Decimal) -> Coverage:
    """`none`, `partial` or `full`: how much of `needed` is `done`."""
    if done <= 0:
        return Coverage.none
    return Coverage.full if done >= needed else Coverage.partial


def _percent(part: Decimal, whole: Decimal) -> int:
    return min(int(part * 100 / whole), 100) if whole > 0 else 0


@dataclass(frozen=True)
class NeedCoverage:
    needed: Decimal
    pledged: Decimal
    delivered: Decimal

    @property
    def remaining(self) -> Decimal:
        return self.needed - self.pledged

    @property
    def pledged_percent(self) -> int:
        """Of the quantity needed, the whole per cent pledged (at most 100): the bars' figure."""
        return _percent(self.pledged, self.needed)

    @property
    def delivered_percent(self) -> int:
        return _percent(self.delivered, self.needed)

    @property
    def pledge_coverage(self) -> Coverage:
        return level(self.pledged, self.needed)

    @property
    def delivery_coverage(self) -> Coverage:
        return level(self.delivered, self.needed)

    def as_dict(self) -> dict:
        return {
            "pledged": self.pledged,
            "delivered": self.delivered,
            "remaining": self.remaining,
            "pledge_coverage": self.pledge_coverage,
            "delivery_coverage": self.delivery_coverage,
        }


def coverage_of(*, needed: Decimal, pledges: Iterable[Pledge], receipts: Iterable[Receipt]) -> NeedCoverage:
    """The coverage of one need from its pledges and the receipts recorded against them."""
    return NeedCoverage(
        needed=needed,
        pledged=sum((p.counted for p in pledges), ZERO),
        delivered=sum((r.quantity for r in receipts), ZERO),
    )


def counted_quantity() -> sa.ColumnElement:
    """SQL: what each pledge row counts against its need (the same rule as `Pledge.counted`)."""
    return sa.case(
        (
            col(Pledge.status).in_([s.value for s in COMMITTED_PLEDGE]),
            sa.type_coerce(Pledge.accepted_quantity, sa.BigInteger),
        ),
        (col(Pledge.status) == PledgeStatus.offered.value, sa.type_coerce(Pledge.quantity, sa.BigInteger)),
        else_=0,
    )


def _sum() -> sa.ColumnElement:
    return sa.type_coerce(sa.func.coalesce(sa.func.sum(counted_quantity()), 0), QuantityType)


def pledged_total(*, session: Session, need_id: int) -> Decimal:
    """The live pledged quantity of one need, from the database."""
    return session.exec(_PLEDGED_TOTAL, params={"need_id": need_id}).one()


# Built once: every pledge and acceptance asks it, under the need's lock.
_PLEDGED_TOTAL = select(_sum()).where(Pledge.need_id == sa.bindparam("need_id"))
# The same, as a column of a query over needs.
PLEDGED_OF_NEED = sa.select(_sum()).where(Pledge.need_id == Need.id).scalar_subquery()


def delivered_by_pledge(*, session: Session, pledge_ids: Iterable[int]) -> dict[int, Decimal]:
    """Received quantity per pledge."""
    ids = list(pledge_ids)
    if not ids:
        return {}
    total = sa.type_coerce(sa.func.sum(sa.type_coerce(Receipt.quantity, sa.BigInteger)), QuantityType)
    rows = session.exec(
        select(Receipt.pledge_id, total).where(col(Receipt.pledge_id).in_(ids)).group_by(Receipt.pledge_id)
    )
    return dict(rows.all())


def coverage_for(*, session: Session, needs: Iterable[Need]) -> dict[int, NeedCoverage]:
    """Coverage of many needs in two grouped queries (the board shows hundreds at once)."""
    needs = list(needs)
    if not needs:
        return {}
    ids = [n.id for n in needs]
    pledged = dict(
        session.exec(select(Pledge.need_id, _sum()).where(col(Pledge.need_id).in_(ids)).group_by(Pledge.need_id)).all()
    )
    received = sa.type_coerce(sa.func.sum(sa.type_coerce(Receipt.quantity, sa.BigInteger)), QuantityType)
    delivered = dict(
        session.exec(
            select(Pledge.need_id, received)
            .join(Receipt, col(Receipt.pledge_id) == Pledge.id)
            .where(col(Pledge.need_id).in_(ids))
            .group_by(Pledge.need_id)
        ).all()
    )
    return {
        n.id: NeedCoverage(needed=n.quantity, pledged=pledged.get(n.id, ZERO), delivered=delivered.get(n.id, ZERO))
        for n in needs
    }
