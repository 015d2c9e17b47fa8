"""The status machines of emergencies, needs, pledges and offers, driven through the JSON API.

Every allowed transition answers with the object in its new state; every other action answers 409 and
changes nothing: no row, no queued e-mail, no audit entry (a snapshot of all of them before and after).
"""

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.db import utcnow
from service.emergencies import service
from service.emergencies.models import Need, Offer, Pledge
from service.notifications.models import OutboxMessage
from service.partners.models import Organisation
from service.users.models import User
from tests.emergencies.build import PLEDGE_STATES, Logistics, iso
from tests.emergencies.state import changes, logistics_state
from tests.factories import api_headers, make_partner, make_user

CLOSED_BY_EMERGENCY = "The emergency was closed."


@dataclass
class World:
    client: TestClient
    engine: Any
    build: Logistics
    org_a: Organisation
    org_b: Organisation
    staff: dict[str, str]
    partner_a: dict[str, str]

    def call(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
        return self.client.request(method, path, json=body, headers=headers)

    def refused(self, method: str, path: str, headers: dict[str, str], body: Any = None, status: int = 409) -> str:
        """Calls a route that must refuse; returns what is wrong (empty if it refused and changed nothing)."""
        before = logistics_state(self.engine)
        response = self.call(method, path, headers, body)
        problems = changes(before, logistics_state(self.engine))
        if response.status_code != status:
            return f"{method} {path}: expected {status}, got {response.status_code} {response.text[:200]}"
        if not response.json().get("detail"):
            return f"{method} {path}: a refusal that says nothing"
        return f"{method} {path}: refused, yet changed {problems}" if problems else ""


@pytest.fixture
def world(client, session, engine) -> World:
    coordinator = make_user(session, "coordinator")
    org_a = make_partner(session, name="Сдружение „Алфа“", sectors=["water"])
    org_b = make_partner(session, name="„Бета“ ООД", kind="business")
    rep_a = make_user(session, "partner", organisation=org_a, email="alfa@example.test")
    make_user(session, "partner", organisation=org_b, email="beta@example.test", language="en")
    return World(
        client=client,
        engine=engine,
        build=Logistics(engine, coordinator),
        org_a=org_a,
        org_b=org_b,
        staff=api_headers(client, coordinator),
        partner_a=api_headers(client, rep_a),
    )


def outbox(engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)))


def user_id(engine, email: str) -> int:
    with Session(engine) as session:
        return session.exec(select(User.id).where(User.email == email)).one()


def assert_none(problems: list[str]) -> None:
    """Every check's problem (an empty string where it went right), reported all together."""
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)


# --- pledges ---------------------------------------------------------------------------------------------

ACTIONS = ("accept", "decline", "withdraw", "dispatch", "cancel", "receive")
PLEDGE_MACHINE = {
    # state          accept      decline     withdraw     dispatch      cancel       receive (the rest)
    "offered":    ("accepted", "declined", "withdrawn", 409,          "cancelled", 409),
    "accepted":   (409,        409,        "withdrawn", "in_transit", "cancelled", "delivered"),
    "in_transit": (409,        409,        "withdrawn", 409,          "cancelled", "delivered"),
    "partial":    (409,        409,        409,         409,          "cancelled", "delivered"),
    "delivered":  (409,        409,        409,         409,          409,         409),
    "declined":   (409,        409,        409,         409,          409,         409),
    "withdrawn":  (409,        409,        409,         409,          409,         409),
    "expired":    (409,        409,        409,         409,          409,         409),
    "cancelled":  (409,        409,        409,         409,          409,         409),
}  # fmt: skip
OFFERED, ACCEPTED = 10, 6  # each pledge offers 10 and is accepted (where it is) for 6
# What a pledge counts against its need in each state: the offer, then the accepted part, then nothing.
COUNTED = {"offered": OFFERED, "accepted": ACCEPTED, "in_transit": ACCEPTED, "delivered": ACCEPTED}


def pledge_action(w: World, action: str, pledge_id: int) -> tuple[str, str, dict[str, str], Any]:
    """The request that performs `action` on a pledge, by the caller who may."""
    path = f"/api/v1/pledges/{pledge_id}"
    if action == "receive":
        pledge = w.call("GET", path, w.staff).json()
        rest = (pledge["accepted_quantity"] or 0) - pledge["delivered"]
        rest = rest if rest > 0 else 1  # where nothing is due, one more is still a receipt to refuse
        return "POST", f"{path}/receipts", w.staff, {"quantity": rest, "received_by": "Склад"}
    body = {"reason": "Промяна в плана"} if action in ("decline", "cancel") else None
    if action == "accept":
        body = {"accepted_quantity": ACCEPTED}
    return "POST", f"{path}/{action}", w.partner_a if action == "withdraw" else w.staff, body


def receipt_rows(touched: set[str]) -> set[str]:
    """The new receipt and queued e-mail among the rows an action changed (their ids are not known ahead)."""
    return {row for row in touched if row.startswith(("Receipt ", "OutboxMessage "))}


@pytest.mark.parametrize("state", PLEDGE_STATES)
def test_every_pledge_action_from_every_state(world, state):
    w = world
    emergency = w.build.emergency()
    need = w.build.need(emergency, quantity=1000)
    problems = []
    for action, expected in zip(ACTIONS, PLEDGE_MACHINE[state], strict=True):
        pid = w.build.pledge(need, w.org_a.id, state, quantity=OFFERED, accepted=ACCEPTED)
        method, path, headers, body = pledge_action(w, action, pid)
        if expected == 409:
            problems.append(w.refused(method, path, headers, body))
            continue
        pledged_before = w.call("GET", f"/api/v1/needs/{need}", w.staff).json()["pledged"]
        before = logistics_state(w.engine)
        response = w.call(method, path, headers, body)
        touched = {line.split(":")[0] for line in changes(before, logistics_state(w.engine))}
        if touched - {f"Pledge {pid}", "audit_rows", "audit_head"} - receipt_rows(touched):
            problems.append(f"{state} {action}: changed more than the pledge: {sorted(touched)}")
        after = w.call("GET", f"/api/v1/pledges/{pid}", w.staff).json()
        if response.status_code != (201 if action == "receive" else 200):
            problems.append(f"{state} {action}: got {response.status_code} {response.text[:200]}")
            continue
        if action != "receive" and response.json()["status"] != expected:
            problems.append(f"{state} {action}: answered {response.json()['status']}, expected {expected}")
        if after["status"] != expected:
            problems.append(f"{state} {action}: stored {after['status']}, expected {expected}")
        # The need's pledged quantity follows: the accepted part replaces the offer, a dead pledge counts nothing.
        pledged_after = w.call("GET", f"/api/v1/needs/{need}", w.staff).json()["pledged"]
        was, now = COUNTED.get("in_transit" if state == "partial" else state, 0), COUNTED.get(expected, 0)
        if pledged_after - pledged_before != now - was:
            problems.append(f"{state} {action}: pledged {pledged_before} -> {pledged_after}, expected {was} -> {now}")
    assert_none(problems)


def test_a_partner_dispatches_their_accepted_pledge_and_the_receipts_deliver_it(world):
    w = world
    need = w.build.need(w.build.emergency(), unit="kg", quantity="500.50")
    pid = w.build.pledge(need, w.org_a.id, "accepted", quantity="200.25", accepted="150.75")

    dispatched = w.call("POST", f"/api/v1/pledges/{pid}/dispatch", w.partner_a)
    assert dispatched.status_code == 200, dispatched.text
    assert dispatched.json()["status"] == "in_transit" and dispatched.json()["dispatched_at"]
    for part, status in [(100.5, "in_transit"), (50.25, "delivered")]:
        receipt = w.call("POST", f"/api/v1/pledges/{pid}/receipts", w.staff, {"quantity": part})
        assert receipt.status_code == 201, receipt.text
        assert w.call("GET", f"/api/v1/pledges/{pid}", w.partner_a).json()["status"] == status
    got = w.call("GET", f"/api/v1/pledges/{pid}", w.partner_a).json()
    assert (got["accepted_quantity"], got["delivered"]) == (150.75, 150.75)
    assert [r["quantity"] for r in w.call("GET", f"/api/v1/pledges/{pid}/receipts", w.partner_a).json()] == [
        100.5,
        50.25,
    ]
    assert w.refused("POST", f"/api/v1/pledges/{pid}/receipts", w.staff, {"quantity": 1}) == ""


def test_an_offered_pledge_expires_by_the_job_once_its_deliver_by_passes(world):
    w = world
    need = w.build.need(w.build.emergency(), quantity=100)
    due, not_yet, accepted = (w.build.pledge(need, w.org_a.id, s) for s in ("offered", "offered", "accepted"))
    for pid in (due, accepted):
        w.build.update(Pledge, pid, deliver_by=utcnow() - service.CLOCK_SKEW)

    with w.build.session() as session:
        assert service.expire_offered_pledges(session=session) == 1

    statuses = {pid: w.call("GET", f"/api/v1/pledges/{pid}", w.partner_a).json()["status"] for pid in (due, not_yet)}
    assert statuses == {due: "expired", not_yet: "offered"}
    assert w.call("GET", f"/api/v1/pledges/{accepted}", w.staff).json()["status"] == "accepted"  # late, not expired
    assert w.call("GET", f"/api/v1/needs/{need}", w.staff).json()["pledged"] == 20  # the expired one counts nothing
    assert w.refused("POST", f"/api/v1/pledges/{due}/accept", w.staff, {}) == ""


# --- emergencies -----------------------------------------------------------------------------------------


def test_an_emergency_is_stood_down_then_closed_or_closed_at_once(world):
    w = world
    first, second = w.build.emergency(), w.build.emergency()

    stood_down = w.call("POST", f"/api/v1/emergencies/{first}/stand-down", w.staff)
    assert stood_down.status_code == 200, stood_down.text
    assert stood_down.json()["status"] == "stood_down" and stood_down.json()["stood_down_at"]
    closed = w.call("POST", f"/api/v1/emergencies/{first}/close", w.staff)
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed" and closed.json()["closed_at"]

    at_once = w.call("POST", f"/api/v1/emergencies/{second}/close", w.staff)
    assert at_once.status_code == 200, at_once.text
    assert at_once.json()["status"] == "closed" and at_once.json()["stood_down_at"] is None


def test_what_a_stood_down_or_closed_emergency_refuses(world):
    w = world
    stood_down, closed = w.build.emergency("stood_down"), w.build.emergency("closed")
    # An open need and a draft left in an emergency that was then stood down.
    active = w.build.emergency()
    open_need, draft = w.build.need(active), w.build.need(active, "draft")
    assert w.call("POST", f"/api/v1/emergencies/{active}/stand-down", w.staff).status_code == 200
    need_body = {"item_name": "Одеяла", "sector": "shelter", "unit": "pcs", "quantity": 10, "deliver_to": "Зала"}
    pledge_body = {"quantity": 1, "deliver_by": iso(), "organisation_id": w.org_a.id}

    problems = [
        w.refused("POST", f"/api/v1/emergencies/{stood_down}/stand-down", w.staff),
        w.refused("POST", f"/api/v1/emergencies/{closed}/stand-down", w.staff),
        w.refused("POST", f"/api/v1/emergencies/{closed}/close", w.staff),
        w.refused("PATCH", f"/api/v1/emergencies/{closed}", w.staff, {"title": "Ново заглавие"}),
        w.refused("POST", f"/api/v1/emergencies/{closed}/needs", w.staff, need_body),
        w.refused("POST", f"/api/v1/emergencies/{stood_down}/needs?open=true", w.staff, need_body),
        w.refused("POST", f"/api/v1/needs/{draft}/open", w.staff),
        # No new pledges once stood down, not even by staff on a partner's behalf.
        w.refused("POST", f"/api/v1/needs/{open_need}/pledges", w.staff, pledge_body),
    ]
    assert_none(problems)

    # A stood-down emergency still takes a draft need and edits.
    assert w.call("POST", f"/api/v1/emergencies/{stood_down}/needs", w.staff, need_body).status_code == 201
    assert w.call("PATCH", f"/api/v1/emergencies/{stood_down}", w.staff, {"severity": "minor"}).status_code == 200


def test_closing_an_emergency_ends_its_needs_and_declines_the_waiting_pledges(world):
    w = world
    emergency = w.build.emergency()
    water = w.build.need(emergency, item_name="Вода", quantity=1000)
    empty = w.build.need(emergency, item_name="Хляб", unit="pcs", sector="food")
    draft = w.build.need(emergency, "draft", item_name="Генератор", unit="pcs")
    covered = w.build.need(emergency, "closed", item_name="Одеяла", unit="pcs")
    waiting_a = w.build.pledge(water, w.org_a.id)
    waiting_b = w.build.pledge(empty, w.org_b.id, quantity=5)
    accepted = w.build.pledge(water, w.org_a.id, "accepted")
    delivered = w.build.pledge(water, w.org_a.id, "delivered")
    unsolicited = w.build.offer(w.org_a.id)
    covered_before = w.build.get(Need, covered)
    mail_before = len(outbox(w.engine))

    closed = w.call("POST", f"/api/v1/emergencies/{emergency}/close", w.staff)

    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed"
    needs = {n: w.build.get(Need, n) for n in (water, empty, draft, covered)}
    assert {n: (needs[n].status, needs[n].status_reason) for n in (water, empty, draft)} == {
        water: ("closed", CLOSED_BY_EMERGENCY),
        empty: ("closed", CLOSED_BY_EMERGENCY),
        draft: ("cancelled", CLOSED_BY_EMERGENCY),
    }
    assert needs[covered] == covered_before  # already closed, with its own reason
    pledges = {p: w.build.get(Pledge, p) for p in (waiting_a, waiting_b, accepted, delivered)}
    assert {p: (pledges[p].status, pledges[p].status_reason) for p in pledges} == {
        waiting_a: ("declined", CLOSED_BY_EMERGENCY),
        waiting_b: ("declined", CLOSED_BY_EMERGENCY),
        accepted: ("accepted", None),  # what was agreed is still delivered
        delivered: ("delivered", None),
    }
    assert w.build.get(Offer, unsolicited).status == "offered"  # an offer belongs to no emergency
    # Each partner whose waiting pledge was declined is told; no one else.
    mail = outbox(w.engine)[mail_before:]
    assert sorted((m.to_address, m.dedupe_key) for m in mail) == sorted(
        [
            ("alfa@example.test", f"pledge.declined:{waiting_a}:{user_id(w.engine, 'alfa@example.test')}"),
            ("beta@example.test", f"pledge.declined:{waiting_b}:{user_id(w.engine, 'beta@example.test')}"),
        ]
    )
    receipt = w.call("POST", f"/api/v1/pledges/{accepted}/receipts", w.staff, {"quantity": 10})
    assert receipt.status_code == 201, receipt.text
    assert w.call("GET", f"/api/v1/pledges/{accepted}", w.staff).json()["status"] == "delivered"


# --- needs -----------------------------------------------------------------------------------------------


def test_every_allowed_need_transition(world):
    w = world
    emergency = w.build.emergency()
    opened, closed, cancelled_draft, cancelled_open = (w.build.need(emergency, "draft") for _ in range(4))

    for nid, path, body, status in [
        (opened, "open", None, "open"),
        (closed, "open", None, "open"),
        (closed, "close", {"reason": "Покрита изцяло"}, "closed"),
        (cancelled_draft, "cancel", {"reason": "Грешно въведена"}, "cancelled"),
        (cancelled_open, "open", None, "open"),
        (cancelled_open, "cancel", {"reason": "Вече не е нужна"}, "cancelled"),
    ]:
        response = w.call("POST", f"/api/v1/needs/{nid}/{path}", w.staff, body)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["status"] == status
        assert w.build.get(Need, nid).status == status
    assert w.build.get(Need, closed).status_reason == "Покрита изцяло"
    assert w.build.get(Need, cancelled_open).status_reason == "Вече не е нужна"
    # Closing without a reason is allowed too.
    plain = w.build.need(emergency)
    assert w.call("POST", f"/api/v1/needs/{plain}/close", w.staff).json()["status"] == "closed"


def test_what_a_need_refuses_in_each_state(world):
    w = world
    emergency = w.build.emergency()
    draft, open_, closed, cancelled = (w.build.need(emergency, s) for s in ("draft", "open", "closed", "cancelled"))
    reason = {"reason": "Опит"}
    pledge = {"quantity": 1, "deliver_by": iso(), "organisation_id": w.org_a.id}
    problems = [
        w.refused("POST", f"/api/v1/needs/{open_}/open", w.staff),
        w.refused("POST", f"/api/v1/needs/{closed}/open", w.staff),  # no reopening
        w.refused("POST", f"/api/v1/needs/{cancelled}/open", w.staff),
        w.refused("POST", f"/api/v1/needs/{draft}/close", w.staff),
        w.refused("POST", f"/api/v1/needs/{closed}/close", w.staff),
        w.refused("POST", f"/api/v1/needs/{cancelled}/close", w.staff),
        w.refused("POST", f"/api/v1/needs/{closed}/cancel", w.staff, reason),
        w.refused("POST", f"/api/v1/needs/{cancelled}/cancel", w.staff, reason),
        w.refused("PATCH", f"/api/v1/needs/{closed}", w.staff, {"quantity": 5}),
        w.refused("PATCH", f"/api/v1/needs/{cancelled}", w.staff, {"priority": "high"}),
        # Pledges go only against open needs.
        w.refused("POST", f"/api/v1/needs/{draft}/pledges", w.staff, pledge),
        w.refused("POST", f"/api/v1/needs/{closed}/pledges", w.staff, pledge),
        w.refused("POST", f"/api/v1/needs/{cancelled}/pledges", w.staff, pledge),
    ]
    assert_none(problems)


def test_cancelling_a_need_ends_its_live_pledges_and_tells_the_partners(world):
    w = world
    need = w.build.need(w.build.emergency(), item_name="Пясъчни торби", unit="pcs", sector="shelter", quantity=900)
    offered = w.build.pledge(need, w.org_a.id, "offered", quantity=100)
    accepted = w.build.pledge(need, w.org_a.id, "accepted", quantity=250, accepted=120)
    in_transit = w.build.pledge(need, w.org_b.id, "in_transit", quantity=300)
    partial = w.build.pledge(need, w.org_b.id, "partial", quantity=40)
    delivered = w.build.pledge(need, w.org_a.id, "delivered", quantity=20)
    withdrawn = w.build.pledge(need, w.org_a.id, "withdrawn", quantity=30)
    mail_before = len(outbox(w.engine))

    response = w.call("POST", f"/api/v1/needs/{need}/cancel", w.staff, {"reason": "Дигата издържа"})

    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["status_reason"]) == ("cancelled", "Дигата издържа")
    statuses = {p: w.build.get(Pledge, p) for p in (offered, accepted, in_transit, partial, delivered, withdrawn)}
    assert {p: (row.status, row.status_reason) for p, row in statuses.items()} == {
        offered: ("declined", "Дигата издържа"),
        accepted: ("cancelled", "Дигата издържа"),
        in_transit: ("cancelled", "Дигата издържа"),
        partial: ("cancelled", "Дигата издържа"),
        delivered: ("delivered", None),
        withdrawn: ("withdrawn", None),
    }
    assert response.json()["pledged"] == 20  # only the delivered pledge still counts

    mail = {m.dedupe_key.rsplit(":", 1)[0]: m for m in outbox(w.engine)[mail_before:]}  # pledge.<status>:<id>
    assert sorted(mail) == sorted(
        [f"pledge.declined:{offered}", *(f"pledge.cancelled:{p}" for p in (accepted, in_transit, partial))]
    )
    to_a = mail[f"pledge.cancelled:{accepted}"]
    assert to_a.to_address == "alfa@example.test"
    assert "Пясъчни торби" in to_a.subject and "Пясъчни торби" in to_a.body
    assert "Дигата издържа" in to_a.body
    # The partner is told of the quantity that was agreed, not of the larger one first offered.
    assert "120" in to_a.body and "250" not in to_a.body
    to_b = mail[f"pledge.cancelled:{in_transit}"]
    assert to_b.to_address == "beta@example.test" and "300" in to_b.body


# --- unsolicited offers ----------------------------------------------------------------------------------


def test_an_offer_is_converted_or_declined_once(world):
    w = world
    need = w.build.need(w.build.emergency(), item_name="Одеяла", sector="shelter", unit="pcs", quantity=80)
    converted, declined = w.build.offer(w.org_a.id), w.build.offer(w.org_a.id)
    convert = {"need_id": need, "quantity": 30, "deliver_by": iso(12)}

    pledge = w.call("POST", f"/api/v1/offers/{converted}/convert", w.staff, convert)
    assert pledge.status_code == 200, pledge.text
    assert pledge.json()["status"] == "accepted"
    assert (pledge.json()["offer_id"], pledge.json()["accepted_quantity"]) == (converted, 30)
    assert pledge.json()["organisation_id"] == w.org_a.id
    assert w.build.get(Offer, converted).status == "converted"
    assert w.call("GET", f"/api/v1/needs/{need}", w.staff).json()["pledged"] == 30

    answer = w.call("POST", f"/api/v1/offers/{declined}/decline", w.staff, {"reason": "Няма нужда от одеяла"})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["status_reason"]) == ("declined", "Няма нужда от одеяла")

    problems = [
        w.refused("POST", f"/api/v1/offers/{declined}/convert", w.staff, convert),
        w.refused("POST", f"/api/v1/offers/{converted}/convert", w.staff, convert),
        w.refused("POST", f"/api/v1/offers/{declined}/decline", w.staff, {"reason": "Пак не"}),
        w.refused("POST", f"/api/v1/offers/{converted}/decline", w.staff, {"reason": "Пак не"}),
    ]
    # An offer turns into a pledge only against an open need of an active emergency.
    waiting = w.build.offer(w.org_a.id)
    stood_down = w.build.emergency()
    later_need = w.build.need(stood_down, unit="pcs")
    w.call("POST", f"/api/v1/emergencies/{stood_down}/stand-down", w.staff)
    draft = w.build.need(w.build.emergency(), "draft", unit="pcs")
    for target in (later_need, draft):
        problems.append(w.refused("POST", f"/api/v1/offers/{waiting}/convert", w.staff, {**convert, "need_id": target}))
    assert_none(problems)
