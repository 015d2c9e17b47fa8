"""Malformed, out-of-range and hostile input to the logistics API.

A refusal is a clear 4xx that names the field (`detail[].loc` on 422) and changes nothing: no row, no
queued e-mail, no audit entry. Hostile text that is otherwise valid is kept exactly as typed.
"""

from typing import Any

import pytest
from sqlmodel import Session

from service.emergencies.models import Need, Pledge
from tests.emergencies.build import Logistics, iso
from tests.emergencies.state import changes, logistics_state
from tests.factories import api_headers, make_partner, make_user

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
SQL = "Robert'); DROP TABLE pledge; --"
NAIVE = "2099-01-01T10:00:00"  # no offset: which time zone would it be?
BIG = 10**400  # a 400-digit number
# Quantities no need, pledge, receipt or offer may have, whatever the unit.
BAD_QUANTITIES = [
    -1, 0, -0.01, 0.001, 1.005, 1e12, 1_000_000_000.01, BIG, "ten", "", "1,5", "NaN", "Infinity",
    True, False, None, [5], {"value": 5},
]  # fmt: skip
WHOLE_UNITS = ("pcs", "box", "pallet")


def error_at(response: Any, *loc: Any) -> str | None:
    """The message an API 422 gives at `loc` (e.g. "body", "quantity"), or None."""
    detail = response.json().get("detail")
    if isinstance(detail, list):
        for item in detail:
            if tuple(item.get("loc", ())) == loc:
                return item.get("msg") or "(no message)"
    return None


@pytest.fixture
def api(client, session, engine):
    coordinator = make_user(session, "coordinator")
    org = make_partner(session, name="Сдружение „Алфа“")
    partner = make_user(session, "partner", organisation=org)
    build = Logistics(engine, coordinator)

    class Api:
        staff = api_headers(client, coordinator)
        rep = api_headers(client, partner)

        def __init__(self) -> None:
            self.build, self.org, self.engine = build, org, engine
            self.problems: list[str] = []

        def refuses(self, method: str, path: str, body: Any, headers: dict, status: int, *loc: Any) -> None:
            """Expects `status` (naming `loc` on 422) and nothing changed; notes what went otherwise."""
            before = logistics_state(engine)
            response = client.request(method, path, json=body, headers=headers)
            where = f"{method} {path} {str(body)[:120]}"
            if response.status_code != status:
                self.problems.append(f"{where}: expected {status}, got {response.status_code} {response.text[:200]}")
            elif loc and not error_at(response, *loc):
                self.problems.append(f"{where}: the error does not name {loc}: {response.text[:200]}")
            elif not response.json().get("detail"):
                self.problems.append(f"{where}: a refusal that says nothing")
            if changed := changes(before, logistics_state(engine)):
                self.problems.append(f"{where}: refused, yet changed {changed[:2]}")

        def check(self) -> None:
            assert not self.problems, "\n".join(self.problems)

    return Api()


def test_bad_needs(api):
    emergency = api.build.emergency()
    path = f"/api/v1/emergencies/{emergency}/needs"
    need = {"item_name": "Бутилирана вода", "sector": "water", "unit": "l", "quantity": 10, "deliver_to": "Училище"}
    for quantity in BAD_QUANTITIES:
        api.refuses("POST", path, {**need, "quantity": quantity}, api.staff, 422, "body", "quantity")
    for unit in WHOLE_UNITS:
        api.refuses("POST", path, {**need, "unit": unit, "quantity": 2.5}, api.staff, 422, "body", "quantity")
    for body, field in [
        ({k: v for k, v in need.items() if k != "quantity"}, "quantity"),
        ({k: v for k, v in need.items() if k != "item_name"}, "item_name"),
        ({**need, "item_name": "   "}, "item_name"),
        ({**need, "item_name": "я" * 201}, "item_name"),
        ({**need, "item_name": 12345}, "item_name"),
        ({**need, "deliver_to": "я" * 301}, "deliver_to"),
        ({**need, "sector": "weapons"}, "sector"),
        ({**need, "unit": "ton"}, "unit"),
        ({**need, "unit": "PCS"}, "unit"),
        ({**need, "priority": "urgent"}, "priority"),
        ({**need, "needed_by": "tomorrow"}, "needed_by"),
        ({**need, "needed_by": NAIVE}, "needed_by"),
        ({**need, "status": "open"}, "status"),
        ({**need, "emergency_id": emergency}, "emergency_id"),
        ({**need, "pledged": 10}, "pledged"),
    ]:
        api.refuses("POST", path, body, api.staff, 422, "body", field)
    api.refuses("POST", path, [need], api.staff, 422, "body")
    api.refuses("POST", f"{path}?open=perhaps", need, api.staff, 422, "query", "open")

    pcs = api.build.need(emergency, unit="pcs", quantity=100)
    api.build.pledge(pcs, api.org.id, quantity=40)
    for body, status, field in [
        ({"quantity": 12.5}, 422, "quantity"),
        ({"quantity": -3}, 422, "quantity"),
        ({"quantity": 39}, 409, "quantity"),  # below what is already pledged
        ({"unit": "kg"}, 409, "unit"),  # the unit cannot change under pledges
        ({"unit": None}, 422, "unit"),
        ({"item_name": None}, 422, "item_name"),
        ({"item_name": "я" * 201}, 422, "item_name"),
        ({"needed_by": NAIVE}, 422, "needed_by"),
        ({"status": "closed"}, 422, "status"),
    ]:
        api.refuses("PATCH", f"/api/v1/needs/{pcs}", body, api.staff, status, "body", field)
    api.check()


def test_bad_pledges(api):
    emergency = api.build.emergency()
    kg = api.build.need(emergency, unit="kg", sector="food", quantity=500)
    pcs = api.build.need(emergency, unit="pcs", sector="shelter", quantity=500)
    path = f"/api/v1/needs/{kg}/pledges"
    pledge = {"quantity": 10, "deliver_by": iso(24)}
    for quantity in BAD_QUANTITIES:
        api.refuses("POST", path, {**pledge, "quantity": quantity}, api.rep, 422, "body", "quantity")
    api.refuses("POST", f"/api/v1/needs/{pcs}/pledges", {**pledge, "quantity": 2.5}, api.rep, 422, "body", "quantity")
    for body, field in [
        ({"quantity": 10}, "deliver_by"),
        ({**pledge, "deliver_by": iso(-2)}, "deliver_by"),  # already passed
        ({**pledge, "deliver_by": "next week"}, "deliver_by"),
        ({**pledge, "deliver_by": NAIVE}, "deliver_by"),
        ({**pledge, "deliver_by": "2099-01-01"}, "deliver_by"),  # a date, not a time
        ({**pledge, "available_from": iso(48)}, "available_from"),  # after deliver_by
        ({**pledge, "available_from": NAIVE}, "available_from"),
        ({**pledge, "note": "я" * 2001}, "note"),
        ({**pledge, "status": "accepted"}, "status"),
        ({**pledge, "accepted_quantity": 10}, "accepted_quantity"),
        ({**pledge, "need_id": pcs}, "need_id"),
        ({**pledge, "organisation_id": 0}, "organisation_id"),
        ({**pledge, "organisation_id": 2**31}, "organisation_id"),
        ({**pledge, "organisation_id": "alfa"}, "organisation_id"),
    ]:
        api.refuses("POST", path, body, api.rep, 422, "body", field)
    # Staff must say whose pledge it is, and an organisation that exists.
    api.refuses("POST", path, pledge, api.staff, 422, "body", "organisation_id")
    api.refuses("POST", path, {**pledge, "organisation_id": 99999}, api.staff, 422, "body", "organisation_id")
    # More than the need lacks: 409, saying how much is still open.
    api.refuses("POST", path, {**pledge, "quantity": 500.01}, api.rep, 409)
    api.refuses("POST", path, "not an object", api.rep, 422, "body")
    api.check()


def test_bad_actions_on_pledges(api, client):
    emergency = api.build.emergency()
    pcs = api.build.need(emergency, unit="pcs", sector="shelter", quantity=500)
    offered = api.build.pledge(pcs, api.org.id, quantity=10)
    accepted = api.build.pledge(pcs, api.org.id, "accepted", quantity=10)
    accept = f"/api/v1/pledges/{offered}/accept"
    for value in [0, -1, 2.5, 1.005, 11, BIG, "all", True]:
        api.refuses("POST", accept, {"accepted_quantity": value}, api.staff, 422, "body", "accepted_quantity")
    api.refuses("POST", accept, {"quantity": 5}, api.staff, 422, "body", "quantity")
    for action in ("decline", "cancel"):
        for body, loc in [
            (None, ("body",)),
            ({}, ("body", "reason")),
            ({"reason": "no"}, ("body", "reason")),  # too short to tell anyone anything
            ({"reason": "я" * 501}, ("body", "reason")),
            ({"reason": None}, ("body", "reason")),
            ({"reason": "Не е нужно", "notify": False}, ("body", "notify")),
        ]:
            api.refuses("POST", f"/api/v1/pledges/{offered}/{action}", body, api.staff, 422, *loc)
    receipts = f"/api/v1/pledges/{accepted}/receipts"
    for body, status, field in [
        ({"quantity": 0}, 422, "quantity"),
        ({"quantity": -2}, 422, "quantity"),
        ({"quantity": 2.5}, 422, "quantity"),
        ({"quantity": BIG}, 422, "quantity"),
        ({"quantity": 11}, 409, "quantity"),  # more than is still to arrive
        ({"quantity": 1, "received_at": iso(2)}, 422, "received_at"),  # in the future
        ({"quantity": 1, "received_at": NAIVE}, 422, "received_at"),
        ({"quantity": 1, "received_by": "я" * 201}, 422, "received_by"),
        ({"quantity": 1, "note": "я" * 2001}, 422, "note"),
        ({"quantity": 1, "pledge_id": offered}, 422, "pledge_id"),
    ]:
        api.refuses("POST", receipts, body, api.staff, status, "body", field)
    api.check()


def test_bad_offers(api):
    need = api.build.need(api.build.emergency(), unit="pcs", sector="shelter", quantity=100)
    kg = api.build.need(api.build.emergency(), unit="kg", sector="food", quantity=100)
    offer = {"item_name": "Одеяла", "sector": "shelter", "unit": "box", "quantity": 4}
    for quantity in BAD_QUANTITIES:
        api.refuses("POST", "/api/v1/offers", {**offer, "quantity": quantity}, api.rep, 422, "body", "quantity")
    for body, field in [
        ({**offer, "quantity": 1.5}, "quantity"),
        ({**offer, "sector": "weapons"}, "sector"),
        ({**offer, "unit": "crate"}, "unit"),
        ({**offer, "item_name": "я" * 201}, "item_name"),
        ({**offer, "note": "я" * 2001}, "note"),
        ({**offer, "status": "converted"}, "status"),
    ]:
        api.refuses("POST", "/api/v1/offers", body, api.rep, 422, "body", field)

    waiting = api.build.offer(api.org.id, unit="pcs", quantity=20)
    convert = f"/api/v1/offers/{waiting}/convert"
    ok = {"need_id": need, "deliver_by": iso(12)}
    for body, field in [
        ({**ok, "need_id": 999999}, "need_id"),  # no such need
        ({**ok, "need_id": 0}, "need_id"),
        ({**ok, "need_id": BIG}, "need_id"),
        ({**ok, "need_id": kg}, "need_id"),  # counted in kg, the offer in pieces
        ({**ok, "quantity": 21}, "quantity"),  # more than was offered
        ({**ok, "quantity": 0.5}, "quantity"),
        ({**ok, "deliver_by": iso(-3)}, "deliver_by"),
        ({**ok, "deliver_by": NAIVE}, "deliver_by"),
        ({"need_id": need}, "deliver_by"),
        ({**ok, "organisation_id": api.org.id}, "organisation_id"),
    ]:
        api.refuses("POST", convert, body, api.staff, 422, "body", field)
    api.refuses("POST", f"/api/v1/offers/{waiting}/decline", {"reason": ""}, api.staff, 422, "body", "reason")
    api.check()


def test_bad_emergencies(api):
    emergency = api.build.emergency()
    declare = {"title": "Наводнение", "kind": "flood", "area": "Перник", "severity": "severe"}
    for body, field in [
        ({**declare, "kind": "tsunami"}, "kind"),
        ({**declare, "severity": "apocalyptic"}, "severity"),
        ({**declare, "severity": 3}, "severity"),
        ({**declare, "title": "я" * 201}, "title"),
        ({**declare, "title": ""}, "title"),
        ({**declare, "area": "я" * 301}, "area"),
        ({**declare, "description": "я" * 5001}, "description"),
        ({**declare, "status": "closed"}, "status"),
        ({**declare, "declared_by_id": 1}, "declared_by_id"),
    ]:
        api.refuses("POST", "/api/v1/emergencies", body, api.staff, 422, "body", field)
    for body, field in [
        ({"title": None}, "title"),
        ({"kind": None}, "kind"),
        ({"status": "closed"}, "status"),
        ({"closed_at": iso()}, "closed_at"),
    ]:
        api.refuses("PATCH", f"/api/v1/emergencies/{emergency}", body, api.staff, 422, "body", field)
    api.check()


@pytest.mark.parametrize("kind", ["emergencies", "needs", "pledges", "offers"])
def test_bad_ids_and_queries(api, kind):
    emergency = api.build.emergency()
    action = {"emergencies": "stand-down", "needs": "open", "pledges": "withdraw", "offers": "decline"}[kind]
    name = {"emergencies": "emergency_id", "needs": "need_id", "pledges": "pledge_id", "offers": "offer_id"}[kind]
    headers = api.rep if kind == "pledges" else api.staff
    body = {"reason": "Не е нужно"} if kind == "offers" else None
    for bad in (0, -1, 2**31, BIG, "abc", "1.5", "1e3"):
        if kind != "offers":
            api.refuses("GET", f"/api/v1/{kind}/{bad}", None, headers, 422, "path", name)
        api.refuses("POST", f"/api/v1/{kind}/{bad}/{action}", body, headers, 422, "path", name)
    missing = 999_999
    if kind != "offers":
        api.refuses("GET", f"/api/v1/{kind}/{missing}", None, headers, 404)
    api.refuses("POST", f"/api/v1/{kind}/{missing}/{action}", body, headers, 404)
    if kind == "needs":
        api.refuses("POST", f"/api/v1/needs/{missing}/pledges", {"quantity": 1, "deliver_by": iso()}, api.rep, 404)
    if kind != "needs":
        for query, field in [
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("limit=ten", "limit"),
            ("offset=-1", "offset"),
            ("status=lost", "status"),
        ]:
            api.refuses("GET", f"/api/v1/{kind}?{query}", None, api.staff, 422, "query", field)
    if kind == "emergencies":
        for query in ("rows=everything", "rows="):
            path = f"/api/v1/emergencies/{emergency}/export.csv?{query}"
            api.refuses("GET", path, None, api.staff, 422, "query", "rows")
    api.check()


def test_hostile_text_is_kept_as_text(api, client, engine):
    emergency = api.build.emergency(title=SCRIPT)
    need = client.post(
        f"/api/v1/emergencies/{emergency}/needs?open=true",
        json={"item_name": SCRIPT, "sector": "water", "unit": "l", "quantity": 5, "deliver_to": IMG},
        headers=api.staff,
    )
    assert need.status_code == 201, need.text
    pledge = client.post(
        f"/api/v1/needs/{need.json()['id']}/pledges",
        json={"quantity": 5, "deliver_by": iso(), "note": SQL},
        headers=api.rep,
    )
    assert pledge.status_code == 201, pledge.text

    assert (need.json()["item_name"], need.json()["deliver_to"], pledge.json()["note"]) == (SCRIPT, IMG, SQL)
    with Session(engine) as session:
        stored_need, stored_pledge = session.get(Need, need.json()["id"]), session.get(Pledge, pledge.json()["id"])
        assert (stored_need.item_name, stored_need.deliver_to, stored_pledge.note) == (SCRIPT, IMG, SQL)
    got = client.get(f"/api/v1/pledges/{pledge.json()['id']}", headers=api.rep)
    assert got.headers["content-type"].startswith("application/json") and got.json()["note"] == SQL
    assert client.get(f"/api/v1/emergencies/{emergency}", headers=api.rep).json()["title"] == SCRIPT
    # The table the quote tried to drop is still there.
    assert client.get("/api/v1/pledges", headers=api.staff).json()["total"] == 1


def test_malformed_json_is_refused(api, client, engine):
    need = api.build.need(api.build.emergency())
    before = logistics_state(engine)
    for raw in (b'{"quantity": 5, ', b"", b"\xff\xfe", b"[]", b"null"):
        response = client.post(
            f"/api/v1/needs/{need}/pledges", content=raw, headers={**api.rep, "content-type": "application/json"}
        )
        assert response.status_code == 422, (raw, response.text)
    assert changes(before, logistics_state(engine)) == []


@pytest.mark.parametrize("number", ["1e400", "-1e400", "NaN", "Infinity"])
def test_a_number_json_cannot_hold_is_refused(api, client, engine, number):
    need = api.build.need(api.build.emergency())
    before = logistics_state(engine)
    raw = f'{{"quantity": {number}, "deliver_by": "2099-01-01T00:00:00Z"}}'.encode()
    response = client.post(
        f"/api/v1/needs/{need}/pledges", content=raw, headers={**api.rep, "content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert error_at(response, "body", "quantity")
    assert changes(before, logistics_state(engine)) == []
