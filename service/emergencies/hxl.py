"""HXL-tagged CSV of an emergency's needs and pledges: the hashtag row right under the header row.

Quantities carry `#item+num+…` (in HXL `#value` is money). Times are ISO 8601 in UTC.
"""

import csv
import io
from collections.abc import Iterable

from sqlmodel import Session, col, select

from service.emergencies.coverage import coverage_for, delivered_by_pledge
from service.emergencies.models import Emergency, Need, Pledge
from service.partners.models import Organisation

NEED_COLUMNS = [
    ("Need ID", "#meta+id"),
    ("Emergency", "#crisis+name"),
    ("Item", "#item+name"),
    ("Sector", "#sector+name"),
    ("Unit", "#item+unit"),
    ("Needed", "#item+num+needed"),
    ("Pledged", "#item+num+pledged"),
    ("Delivered", "#item+num+delivered"),
    ("Status", "#status+name"),
    ("Deliver to", "#loc+name"),
    ("Needed by", "#date+due"),
]
PLEDGE_COLUMNS = [
    ("Pledge ID", "#meta+id"),
    ("Emergency", "#crisis+name"),
    ("Need", "#need+name"),
    ("Organisation", "#org+name"),
    ("Organisation type", "#org+type"),
    ("Sector", "#sector+name"),
    ("Item", "#item+name"),
    ("Unit", "#item+unit"),
    ("Pledged", "#item+num+pledged"),
    ("Delivered", "#item+num+delivered"),
    ("Status", "#status+name"),
    ("Deliver to", "#loc+name"),
    ("Deliver by", "#date+due"),
]


def _number(value) -> str:
    return format(value.normalize(), "f") if value == value.to_integral() else f"{value:.2f}"


def _safe(value: object) -> str:
    """A cell a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _write(columns: list[tuple[str, str]], rows: Iterable[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([name for name, _ in columns])
    writer.writerow([tag for _, tag in columns])
    for row in rows:
        writer.writerow([_safe(cell) for cell in row])
    return out.getvalue()


def export(*, session: Session, emergency: Emergency, rows: str) -> str:
    """The emergency's `needs` or `pledges` as HXL-tagged CSV."""
    if rows == "pledges":
        return pledges_csv(session=session, emergency=emergency)
    return needs_csv(session=session, emergency=emergency)


def needs_csv(*, session: Session, emergency: Emergency) -> str:
    """One row per need, with its coverage."""
    needs = list(session.exec(select(Need).where(Need.emergency_id == emergency.id).order_by(Need.id)))
    coverage = coverage_for(session=session, needs=needs)
    return _write(
        NEED_COLUMNS,
        (
            [n.id, emergency.title, n.item_name, n.sector.value, n.unit.value, _number(n.quantity),
             _number(coverage[n.id].pledged), _number(coverage[n.id].delivered), n.status.value, n.deliver_to,
             n.needed_by.isoformat() if n.needed_by else ""]
            for n in needs
        ),
    )  # fmt: skip


def pledges_csv(*, session: Session, emergency: Emergency) -> str:
    """One row per pledge against the emergency's needs, with what has arrived."""
    rows = session.exec(
        select(Pledge, Need, Organisation)
        .join(Need, col(Need.id) == Pledge.need_id)
        .join(Organisation, col(Organisation.id) == Pledge.organisation_id)
        .where(Need.emergency_id == emergency.id)
        .order_by(Pledge.id)
    ).all()
    delivered = delivered_by_pledge(session=session, pledge_ids=[p.id for p, _, _ in rows])
    return _write(
        PLEDGE_COLUMNS,
        (
            [p.id, emergency.title, n.item_name, o.name, o.kind.value, n.sector.value, n.item_name, n.unit.value,
             _number(p.accepted_quantity if p.accepted_quantity is not None else p.quantity),
             _number(delivered.get(p.id, 0 * p.quantity)), p.status.value, n.deliver_to, p.deliver_by.isoformat()]
            for p, n, o in rows
        ),
    )  # fmt: skip
