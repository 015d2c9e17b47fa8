"""Who may call which logistics route: every API route × every kind of caller, aimed at org A's things.

One table says the expected status per caller. The callers, organisations and the shared emergency and
need are built once per test; a route that changes its target (accept, close, ...) gets a fresh one for
each call. After every refusal and every read nothing changed (rows, queued e-mail, audit log); a
successful change left an audit entry; outsiders never see org A's name or notes in an answer.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.emergencies.build import Logistics, iso
from tests.emergencies.state import changes, logistics_state
from tests.factories import api_headers, make_partner, make_user

ANON, PARTNER_A, PARTNER_B, COMMS, COORD, ADMIN = CALLERS = (
    "anonymous", "partner of A", "partner of B", "communications", "coordinator", "admin",
)  # fmt: skip
OUTSIDERS = (ANON, PARTNER_B, COMMS)  # who must never see anything of org A's pledges
REFUSED = (401, 403, 404)
ORG_A = "Сдружение „Алфа Тестова“"
ORG_B = "Фондация „Бета Проверка“"
NOTE_A = "Рампа 3, питайте за Иван Алфов"  # on each of org A's pledges and offers


@dataclass
class World:
    """Org A (whose pledges and offers are the targets), org B, one active emergency with an open need."""

    build: Logistics
    org_a: int
    org_b: int
    emergency: int
    need: int
    draft: int
    pledge_a: int  # accepted, with a receipt
    pledge_b: int
    users: dict[str, Any]

    def pledge(self, state: str) -> int:
        return self.build.pledge(self.need, self.org_a, state, quantity=2, note=NOTE_A)


# Where a route aims: ids for the path's {e}, {n}, {p} and {o}, fresh where the call would use it up.
def shared(w: World) -> dict[str, int]:
    return {"e": w.emergency, "n": w.need, "p": w.pledge_a}


def fresh_emergency(w: World) -> dict[str, int]:
    return {"e": w.build.emergency()}


def draft_need(w: World) -> dict[str, int]:
    return {"n": w.build.need(w.emergency, "draft")}


def open_need(w: World) -> dict[str, int]:
    return {"n": w.build.need(w.emergency)}


def offered(w: World) -> dict[str, int]:
    return {"p": w.pledge("offered")}


def accepted(w: World) -> dict[str, int]:
    return {"p": w.pledge("accepted")}


def offer(w: World) -> dict[str, int]:
    return {"o": w.build.offer(w.org_a, unit="l", sector="water", note=NOTE_A)}


# Bodies, built per call: `w` gives the ids a body names.
def emergency_body(w: World) -> dict[str, Any]:
    return {"title": "Горски пожар", "kind": "wildfire", "area": "Витоша", "severity": "moderate"}


def need_body(w: World) -> dict[str, Any]:
    return {"item_name": "Одеяла", "sector": "shelter", "unit": "pcs", "quantity": 10, "deliver_to": "Зала"}


def pledge_for_a(w: World) -> dict[str, Any]:
    return {"quantity": 1, "deliver_by": iso(), "organisation_id": w.org_a}


def offer_for_a(w: World) -> dict[str, Any]:
    return {"item_name": "Палатки", "sector": "shelter", "unit": "pcs", "quantity": 5, "organisation_id": w.org_a}


def convert_body(w: World) -> dict[str, Any]:
    return {"need_id": w.need, "quantity": 1, "deliver_by": iso()}


def reason(w: World) -> dict[str, Any]:
    return {"reason": "Проверка на достъпа"}


def one(w: World) -> dict[str, Any]:
    return {"quantity": 1}


def title(w: World) -> dict[str, Any]:
    return {"title": "Наводнение (обновено)"}


def priority(w: World) -> dict[str, Any]:
    return {"priority": "high"}


@dataclass
class Route:
    method: str
    path: str
    body: Callable[[World], Any] | None
    target: Callable[[World], dict[str, int]]
    expected: dict[str, int] = field(default_factory=dict)


def route(method: str, path: str, body, target, *statuses: int) -> Route:
    return Route(method, path, body, target, dict(zip(CALLERS, statuses, strict=True)))


E, N, P, OF = "/api/v1/emergencies", "/api/v1/needs", "/api/v1/pledges", "/api/v1/offers"
API_ROUTES = [
    #     method   path                          body            target           anon  pA   pB comms coord admin
    route("GET",   E,                            None,           shared,          401, 200, 200, 200, 200, 200),
    route("POST",  E,                            emergency_body, shared,          401, 403, 403, 403, 201, 201),
    route("GET",   E + "/{e}",                   None,           shared,          401, 200, 200, 200, 200, 200),
    route("PATCH", E + "/{e}",                   title,          shared,          401, 403, 403, 403, 200, 200),
    route("GET",   E + "/{e}/needs",             None,           shared,          401, 200, 200, 200, 200, 200),
    route("POST",  E + "/{e}/needs",             need_body,      shared,          401, 403, 403, 403, 201, 201),
    route("POST",  E + "/{e}/stand-down",        None,           fresh_emergency, 401, 403, 403, 403, 200, 200),
    route("POST",  E + "/{e}/close",             None,           fresh_emergency, 401, 403, 403, 403, 200, 200),
    route("GET",   E + "/{e}/coverage",          None,           shared,          401, 403, 403, 403, 200, 200),
    route("GET",   E + "/{e}/export.csv",        None,           shared,          401, 403, 403, 403, 200, 200),
    route("GET",   E + "/{e}/export.csv?rows=pledges", None,     shared,          401, 403, 403, 403, 200, 200),
    route("GET",   N + "/{n}",                   None,           shared,          401, 200, 200, 200, 200, 200),
    route("PATCH", N + "/{n}",                   priority,       shared,          401, 403, 403, 403, 200, 200),
    route("POST",  N + "/{n}/open",              None,           draft_need,      401, 403, 403, 403, 200, 200),
    route("POST",  N + "/{n}/close",             None,           open_need,       401, 403, 403, 403, 200, 200),
    route("POST",  N + "/{n}/cancel",            reason,         open_need,       401, 403, 403, 403, 200, 200),
    route("GET",   N + "/{n}/pledges",           None,           shared,          401, 200, 200, 403, 200, 200),
    # For org A: its own partner may; a partner of B may not pledge in A's name.
    route("POST",  N + "/{n}/pledges",           pledge_for_a,   shared,          401, 201, 403, 403, 201, 201),
    route("GET",   P,                            None,           shared,          401, 200, 200, 403, 200, 200),
    route("GET",   P + "/{p}",                   None,           shared,          401, 200, 404, 403, 200, 200),
    # Accepting, declining and cancelling are the staff's; no partner accepts a pledge, not even their own.
    route("POST",  P + "/{p}/accept",            None,           offered,         401, 403, 403, 403, 200, 200),
    route("POST",  P + "/{p}/decline",           reason,         offered,         401, 403, 403, 403, 200, 200),
    # Withdrawing is the pledging partner's own act; staff cancel instead.
    route("POST",  P + "/{p}/withdraw",          None,           offered,         401, 200, 404, 403, 403, 403),
    route("POST",  P + "/{p}/dispatch",          None,           accepted,        401, 200, 404, 403, 200, 200),
    route("POST",  P + "/{p}/cancel",            reason,         offered,         401, 403, 403, 403, 200, 200),
    route("GET",   P + "/{p}/receipts",          None,           shared,          401, 200, 404, 403, 200, 200),
    route("POST",  P + "/{p}/receipts",          one,            accepted,        401, 403, 403, 403, 201, 201),
    route("GET",   OF,                           None,           shared,          401, 200, 200, 403, 200, 200),
    route("POST",  OF,                           offer_for_a,    shared,          401, 201, 403, 403, 201, 201),
    route("POST",  OF + "/{o}/convert",           convert_body,   offer,           401, 403, 403, 403, 200, 200),
    route("POST",  OF + "/{o}/decline",           reason,         offer,           401, 403, 403, 403, 200, 200),
]  # fmt: skip


def build_world(session, engine) -> World:
    users = {COORD: make_user(session, "coordinator"), ADMIN: make_user(session, "admin")}
    org_a = make_partner(session, name=ORG_A, sectors=["water"])
    org_b = make_partner(session, name=ORG_B, sectors=["food"])
    users |= {
        PARTNER_A: make_user(session, "partner", organisation=org_a),
        PARTNER_B: make_user(session, "partner", organisation=org_b),
        COMMS: make_user(session, "communications"),
    }
    build = Logistics(engine, users[COORD])
    emergency = build.emergency()
    need = build.need(emergency, quantity=100_000)
    world = World(build, org_a.id, org_b.id, emergency, need, build.need(emergency, "draft"), 0, 0, users)
    world.pledge_a = build.pledge(need, org_a.id, "partial", quantity=4, note=NOTE_A)
    world.pledge_b = build.pledge(need, org_b.id, "accepted", quantity=3, note="Бета")
    build.offer(org_a.id, note=NOTE_A)
    build.offer(org_b.id, note="Бета")
    return world


def organisations_in(value: Any) -> set[int]:
    """Every `organisation_id` anywhere in a JSON answer."""
    if isinstance(value, dict):
        found = {value["organisation_id"]} if "organisation_id" in value else set()
        return found.union(*(organisations_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(organisations_in(v) for v in value))
    return set()


def check_call(caller: str, r: Route, path: str, response: Any, before: dict, after: dict, w: World) -> list[str]:
    """What is wrong with one call's outcome (nothing, if it went as the table says)."""
    expected, got = r.expected[caller], response.status_code
    where = f"{caller:>14}  {r.method:5} {path}"
    problems = []
    if got != expected:
        problems.append(f"{where}: expected {expected}, got {got} {response.text[:150]!r}")
    if got in REFUSED or r.method == "GET":
        if changed := changes(before, after):
            problems.append(f"{where}: answered {got}, yet changed {changed[:3]}")
    elif after["audit_rows"] <= before["audit_rows"]:
        problems.append(f"{where}: a change that left no audit entry")
    if got == 401 and response.headers.get("www-authenticate") != "Bearer":
        problems.append(f"{where}: 401 without WWW-Authenticate: Bearer")
    if caller in OUTSIDERS and (NOTE_A in response.text or ORG_A in response.text):
        problems.append(f"{where}: the answer shows org A's pledges")
    if caller in (PARTNER_A, PARTNER_B) and response.headers.get("content-type", "").startswith("application/json"):
        own = w.org_a if caller == PARTNER_A else w.org_b
        if foreign := organisations_in(response.json()) - {own}:
            problems.append(f"{where}: the answer shows organisations {foreign}")
    return problems


def test_api_access_matrix(client, session, engine):
    w = build_world(session, engine)
    headers = {ANON: {}} | {caller: api_headers(client, user) for caller, user in w.users.items()}
    problems = []
    for caller in CALLERS:
        for r in API_ROUTES:
            path = r.path.format(**r.target(w))
            body = r.body(w) if r.body else None
            before = logistics_state(engine)
            response = client.request(r.method, path, json=body, headers=headers[caller])
            problems += check_call(caller, r, path, response, before, logistics_state(engine), w)
    assert not problems, "\n".join(problems)


@pytest.fixture
def world(client, session, engine) -> tuple[World, dict[str, dict[str, str]]]:
    w = build_world(session, engine)
    return w, {caller: api_headers(client, user) for caller, user in w.users.items()}


def test_a_partner_cannot_see_or_touch_another_organisations_pledges(client, engine, world):
    w, headers = world
    a, staff = headers[PARTNER_A], headers[COORD]
    b_offered = w.build.pledge(w.need, w.org_b, "offered", quantity=1)
    missing = 999_999
    before = logistics_state(engine)

    # Another organisation's pledge looks exactly like one that does not exist.
    for path in ("", "/receipts"):
        foreign = client.get(f"{P}/{w.pledge_b}{path}", headers=a)
        absent = client.get(f"{P}/{missing}{path}", headers=a)
        assert foreign.status_code == absent.status_code == 404, (path, foreign.text)
        assert foreign.json() == absent.json()
    for pid, action in [(b_offered, "withdraw"), (w.pledge_b, "dispatch")]:
        assert client.post(f"{P}/{pid}/{action}", headers=a).status_code == 404
    # The staff's actions are refused for the role, before any pledge is looked at: nothing to tell apart.
    for pid, action, body in [
        (b_offered, "accept", {}),
        (b_offered, "decline", {"reason": "чужда"}),
        (b_offered, "cancel", {"reason": "чужда"}),
        (w.pledge_b, "receipts", {"quantity": 1}),
    ]:
        assert client.post(f"{P}/{pid}/{action}", json=body, headers=a).status_code == 403
        assert client.post(f"{P}/{missing}/{action}", json=body, headers=a).status_code == 403
    # The lists hold only the partner's own.
    for path in (P, f"{P}?status=in_transit", OF):
        assert organisations_in(client.get(path, headers=a).json()) == {w.org_a}, path
    assert organisations_in(client.get(f"{N}/{w.need}/pledges", headers=a).json()) == {w.org_a}
    assert organisations_in(client.get(f"{N}/{w.need}/pledges", headers=staff).json()) == {w.org_a, w.org_b}

    # Nor may a partner pledge or offer in another organisation's name, nor accept their own pledge.
    pledge_as_b = {"quantity": 1, "deliver_by": iso(), "organisation_id": w.org_b}
    assert client.post(f"{N}/{w.need}/pledges", json=pledge_as_b, headers=a).status_code == 403
    offer_as_b = {"item_name": "Вода", "sector": "water", "unit": "l", "quantity": 5, "organisation_id": w.org_b}
    assert client.post(OF, json=offer_as_b, headers=a).status_code == 403
    a_offered = w.build.pledge(w.need, w.org_a, "offered", quantity=1)
    before = logistics_state(engine)
    own = client.post(f"{P}/{a_offered}/accept", json={}, headers=a)
    assert own.status_code == 403, own.text

    assert changes(before, logistics_state(engine)) == []


def test_partners_see_only_open_needs_of_active_emergencies(client, engine, world):
    w, headers = world
    a, comms = headers[PARTNER_A], headers[COMMS]
    closed_need = w.build.need(w.emergency, "closed")
    cancelled_need = w.build.need(w.emergency, "cancelled")
    quiet = w.build.emergency()
    quiet_need = w.build.need(quiet)
    assert client.post(f"{E}/{quiet}/stand-down", headers=headers[COORD]).status_code == 200
    gone = w.build.emergency("closed")
    before = logistics_state(engine)

    assert [n["id"] for n in client.get(f"{E}/{w.emergency}/needs", headers=a).json()] == [w.need]
    assert [e["id"] for e in client.get(E, headers=a).json()["items"]] == [w.emergency]
    assert [e["id"] for e in client.get(f"{E}?status=closed", headers=a).json()["items"]] == [w.emergency]
    assert client.get(f"{E}/{w.emergency}/needs?status=draft", headers=a).json()[0]["id"] == w.need
    absent = client.get(f"{N}/999999", headers=a).json()
    for need in (w.draft, closed_need, cancelled_need, quiet_need):
        for method, path, body in [
            ("GET", f"{N}/{need}", None),
            ("GET", f"{N}/{need}/pledges", None),
            ("POST", f"{N}/{need}/pledges", {"quantity": 1, "deliver_by": iso()}),
        ]:
            response = client.request(method, path, json=body, headers=a)
            assert response.status_code == 404, (need, path, response.text)
            assert response.json() == absent
    for emergency in (quiet, gone):
        for path in (f"{E}/{emergency}", f"{E}/{emergency}/needs"):
            assert client.get(path, headers=a).status_code == 404, path

    # Other staff read every emergency and need, whatever its state.
    assert len(client.get(f"{E}/{w.emergency}/needs", headers=comms).json()) == 4
    assert client.get(f"{N}/{w.draft}", headers=comms).status_code == 200
    assert client.get(f"{E}/{gone}", headers=comms).status_code == 200

    assert changes(before, logistics_state(engine)) == []
