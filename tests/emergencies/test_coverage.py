"""Coverage arithmetic: `coverage_of` by hand, then the SQL sums against it on many random needs.

pledged = live pledges, each counted with its accepted quantity once accepted and its offer before;
delivered = the receipts; remaining = needed − pledged; each coverage `none` | `partial` | `full`.
"""

import random
import threading
import time
from decimal import Decimal

import pytest
from sqlmodel import Session, col, select

from service.db import utcnow, write_engine
from service.emergencies import service
from service.emergencies.coverage import NeedCoverage, coverage_for, coverage_of, delivered_by_pledge, pledged_total
from service.emergencies.models import Need, Pledge, PledgeStatus, Receipt
from tests.emergencies.build import Logistics
from tests.factories import api_headers, make_partner, make_user

D = Decimal
DEAD = ("declined", "withdrawn", "expired", "cancelled")


def pledge(status: str, quantity: str, accepted: str | None = None) -> Pledge:
    return Pledge(
        need_id=1,
        organisation_id=1,
        status=PledgeStatus(status),
        quantity=D(quantity),
        accepted_quantity=D(accepted) if accepted is not None else None,
        deliver_by=utcnow(),
    )


def receipt(quantity: str) -> Receipt:
    return Receipt(pledge_id=1, quantity=D(quantity), received_at=utcnow())


def summary(needed: str, pledges: list[Pledge], receipts: list[Receipt] = ()) -> tuple:
    c = coverage_of(needed=D(needed), pledges=pledges, receipts=receipts)
    return c.pledged, c.delivered, c.remaining, c.pledge_coverage.value, c.delivery_coverage.value


CASES = {
    "nothing pledged": ("100", [], [], ("0", "0", "100", "none", "none")),
    "an offer counts while offered": ("100", [pledge("offered", "40")], [], ("40", "0", "60", "partial", "none")),
    "offers that fill the need": (
        "100",
        [pledge("offered", "60"), pledge("offered", "40")],
        [],
        ("100", "0", "0", "full", "none"),
    ),
    "accepted counts what was accepted, not the offer": (
        "100",
        [pledge("accepted", "50", "30"), pledge("in_transit", "20", "15")],
        [],
        ("45", "0", "55", "partial", "none"),
    ),
    "accepted less, then delivered in full": (
        "45",
        [pledge("delivered", "50", "45")],
        [receipt("20"), receipt("25")],
        ("45", "45", "0", "full", "full"),
    ),
    "dead pledges count nothing": (
        "100",
        [pledge(status, "30", "30" if status == "cancelled" else None) for status in DEAD],
        [],
        ("0", "0", "100", "none", "none"),
    ),
    "dead beside live": (
        "100",
        [pledge("declined", "90"), pledge("cancelled", "80", "80"), pledge("offered", "25"), pledge("expired", "5")],
        [],
        ("25", "0", "75", "partial", "none"),
    ),
    "partial receipts": (
        "100",
        [pledge("in_transit", "100", "100")],
        [receipt("15"), receipt("10.5")],
        ("100", "25.5", "0", "full", "partial"),
    ),
    "what arrived of a pledge later cancelled was still delivered": (
        "100",
        [pledge("cancelled", "40", "40")],
        [receipt("10")],
        ("0", "10", "100", "none", "partial"),
    ),
    "decimals are exact": (
        "12.5",
        [pledge("offered", "0.1"), pledge("offered", "0.2"), pledge("accepted", "3.33", "2.21")],
        [receipt("0.01"), receipt("2.19")],
        ("2.51", "2.2", "9.99", "partial", "partial"),
    ),
    "one hundredth short is partial": ("10", [pledge("offered", "9.99")], [], ("9.99", "0", "0.01", "partial", "none")),
    "the largest quantities": (
        "1000000000",
        [pledge("offered", "999999999.99"), pledge("accepted", "1000000000", "0.01")],
        [],
        ("1000000000", "0", "0", "full", "none"),
    ),
}


@pytest.mark.parametrize(("needed", "pledges", "receipts", "expected"), CASES.values(), ids=CASES.keys())
def test_coverage_of(needed, pledges, receipts, expected):
    pledged, delivered, remaining, pledge_coverage, delivery_coverage = summary(needed, pledges, receipts)
    want = tuple(D(v) for v in expected[:3]) + expected[3:]
    assert (pledged, delivered, remaining, pledge_coverage, delivery_coverage) == want
    for value in (pledged, delivered, remaining):
        assert isinstance(value, Decimal) and value == value.quantize(D("0.01"))


# --- the SQL sums against the arithmetic -----------------------------------------------------------------

STATUSES = [s.value for s in PledgeStatus]
SEEDS = range(40)


def random_quantity(rng: random.Random, whole: bool, most: int) -> Decimal:
    """A quantity of up to `most`, in whole units or hundredths; now and then one of the largest allowed."""
    if rng.random() < 0.05:
        most = 1_000_000_000
    cents = rng.randint(1, most * 100)
    return D(cents // 100 if whole else cents) / (1 if whole else 100)


def random_emergency(rng: random.Random, session: Session, emergency_id: int, org_ids: list[int]) -> dict:
    """Needs with random pledges (any status) and receipts, written straight to the tables; returns them."""
    made: dict = {}
    for _ in range(rng.randint(1, 6)):
        unit = rng.choice(["pcs", "kg", "l", "box", "pallet", "person_hours"])
        whole = unit in ("pcs", "box", "pallet")
        need = Need(
            emergency_id=emergency_id,
            item_name="Артикул",
            sector="food",
            unit=unit,
            quantity=random_quantity(rng, whole, 5000),
            deliver_to="Склад",
            status="open",
        )
        session.add(need)
        session.flush()
        made[need.id] = (need.quantity, [], [])
        for _ in range(rng.choice([0, 1, 2, 3, 5, 8])):
            status = rng.choice(STATUSES)
            quantity = random_quantity(rng, whole, 2000)
            accepted = None
            if status in ("accepted", "in_transit", "delivered") or (status == "cancelled" and rng.random() < 0.5):
                accepted = min(quantity, random_quantity(rng, whole, 2000))
            p = Pledge(
                need_id=need.id,
                organisation_id=rng.choice(org_ids),
                quantity=quantity,
                accepted_quantity=accepted,
                status=status,
                deliver_by=utcnow(),
            )
            session.add(p)
            session.flush()
            receipts = []
            if accepted is not None and status != "accepted":
                left = accepted
                for _ in range(rng.randint(0, 3)):
                    part = min(left, random_quantity(rng, whole, 700))
                    if part > 0:
                        receipts.append(Receipt(pledge_id=p.id, quantity=part, received_at=utcnow()))
                        left -= part
                session.add_all(receipts)
            made[need.id][1].append(p)
            made[need.id][2].extend(receipts)
    session.commit()
    return made


def pledge_path_total(engine, need_id: int) -> Decimal:
    """The total a pledge checks against: read with the need's lock (on PostgreSQL by accord_pledged())."""
    with Session(write_engine(engine)) as s:
        return service._lock_need_to_pledge(s, need_id)[2]


def test_the_sql_sums_agree_with_coverage_of_on_random_needs(session, engine):
    coordinator = make_user(session, "coordinator")
    orgs = [make_partner(session).id for _ in range(3)]
    build = Logistics(engine, coordinator)
    checked = 0
    for seed in SEEDS:
        rng = random.Random(seed)
        emergency_id = build.emergency()
        generated = random_emergency(rng, session, emergency_id, orgs)

        with Session(engine) as fresh:  # read back what was stored, in a session that cached nothing
            needs = list(fresh.exec(select(Need).where(Need.emergency_id == emergency_id)))
            from_sql = coverage_for(session=fresh, needs=needs)
            assert sorted(from_sql) == sorted(generated), seed
            for need in needs:
                pledges = list(fresh.exec(select(Pledge).where(Pledge.need_id == need.id)))
                ids = [p.id for p in pledges]
                receipts = list(fresh.exec(select(Receipt).where(col(Receipt.pledge_id).in_(ids))))
                stored = coverage_of(needed=need.quantity, pledges=pledges, receipts=receipts)
                needed, made_pledges, made_receipts = generated[need.id]
                by_hand = coverage_of(needed=needed, pledges=made_pledges, receipts=made_receipts)
                where = f"seed {seed}, need {need.id}"
                assert from_sql[need.id] == stored == by_hand, where
                assert pledged_total(session=fresh, need_id=need.id) == by_hand.pledged, where
                assert pledge_path_total(engine, need.id) == by_hand.pledged, where
                assert from_sql[need.id].remaining == needed - by_hand.pledged, where
                delivered = delivered_by_pledge(session=fresh, pledge_ids=ids)
                for p in pledges:
                    got = delivered.get(p.id, D(0))
                    assert got == sum((r.quantity for r in receipts if r.pledge_id == p.id), D(0)), where
                for value in (from_sql[need.id].pledged, from_sql[need.id].delivered):
                    assert isinstance(value, Decimal) and value == value.quantize(D("0.01")), where
                checked += 1
    assert checked > 100  # enough needs were really compared


def test_a_pledge_waiting_for_the_needs_lock_counts_what_the_holder_committed(session, engine):
    """The total a pledge is checked against is read after the need's lock is granted: the pledges of the
    transaction it waited for count, though they were not committed when its statement began."""
    build = Logistics(engine, make_user(session, "coordinator"))
    organisation_id = make_partner(session).id
    need_id = build.need(build.emergency(), quantity=10, unit="pcs")
    build.pledge(need_id, organisation_id, "accepted", quantity=3)
    seen: list[Decimal] = []
    with Session(write_engine(engine)) as holder:
        assert service._lock_need_to_pledge(holder, need_id)[2] == 3
        waiter = threading.Thread(target=lambda: seen.append(pledge_path_total(engine, need_id)))
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and not seen  # waiting for the need's lock
        holder.add(Pledge(need_id=need_id, organisation_id=organisation_id, quantity=D(6), deliver_by=utcnow()))
        holder.commit()
    waiter.join(10)
    assert seen == [D(9)]


def test_coverage_of_a_need_with_no_pledges_from_sql(session, engine):
    build = Logistics(engine, make_user(session, "coordinator"))
    need_id = build.need(build.emergency(), quantity="7.25", unit="kg")
    with Session(engine) as fresh:
        need = fresh.get(Need, need_id)
        assert pledged_total(session=fresh, need_id=need_id) == 0
        got = coverage_for(session=fresh, needs=[need])[need_id]
        assert (got.pledged, got.delivered, got.remaining) == (0, 0, D("7.25"))
        assert coverage_for(session=fresh, needs=[]) == {}
        assert delivered_by_pledge(session=fresh, pledge_ids=[]) == {}


def test_the_api_shows_decimal_coverage_exactly(client, session, engine):
    coordinator = make_user(session, "coordinator")
    org = make_partner(session)
    build = Logistics(engine, coordinator)
    need = build.need(build.emergency(), unit="kg", sector="food", quantity="12.5")
    for quantity, state, accepted in [("0.1", "offered", None), ("0.2", "offered", None), ("3.33", "partial", "2.21")]:
        build.pledge(need, org.id, state, quantity=quantity, accepted=accepted)

    got = client.get(f"/api/v1/needs/{need}", headers=api_headers(client, coordinator)).json()

    # 0.1 + 0.2 + 2.21 with floats would be 2.5100000000000002; receipts of a halved 2.21 are 1 (whole).
    assert (got["quantity"], got["pledged"], got["remaining"], got["delivered"]) == (12.5, 2.51, 9.99, 1)
    assert (got["pledge_coverage"], got["delivery_coverage"]) == ("partial", "partial")


@pytest.mark.parametrize(
    ("needed", "pledged", "delivered", "percents"),
    [
        ("1000", "333.5", "0", (33, 0)),  # whole per cents, rounded down
        ("3", "2", "2.99", (66, 99)),
        ("10", "10", "12", (100, 100)),  # a receipt over the need shows a full bar, not 120 %
        ("0.5", "0.01", "0.5", (2, 100)),
    ],
)
def test_the_bars_percent_is_whole_and_at_most_100(needed, pledged, delivered, percents):
    coverage = NeedCoverage(needed=D(needed), pledged=D(pledged), delivered=D(delivered))
    assert (coverage.pledged_percent, coverage.delivered_percent) == percents
