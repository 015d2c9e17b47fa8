"""Who may call which memoranda route: every route × every kind of caller.

Coordinators and admins do everything. A partner user sees, opens, signs and declines only the memoranda their
organisation is a party to, once issued; another organisation's memorandum and any draft are the same 404 as a
missing id. Communications officers have no business with memoranda (403); anonymous callers get 401. Every
refusal says why and changes nothing: no row, no queued e-mail, no audit entry.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.memoranda.build import create_body
from tests.memoranda.world import World, make_world, memoranda_state

ANON, PARTNER_A, PARTNER_B, COMMS, COORD, ADMIN = CALLERS = (
    "anonymous", "partner A", "partner B", "communications", "coordinator", "admin",
)  # fmt: skip
SIGNATURE = {"signer_name": "Ивана Петрова", "signer_title": "Председател"}
REASON = {"reason": "Проверка на достъпа"}


@dataclass
class Targets:
    """Org A's issued memorandum (A and us), one of A and B, one of B alone, and a draft of A's."""

    a: int
    ab: int
    b: int
    draft: int


@pytest.fixture
def world(client, session, engine) -> World:
    return make_world(client, session, engine)


@pytest.fixture
def targets(world) -> Targets:
    w = world
    return Targets(
        a=w.build.issued([w.org_a]),
        ab=w.build.issued([w.org_a, w.org_b]),
        b=w.build.issued([w.org_b]),
        draft=w.build.draft([w.org_a]),
    )


def problems_of(checks: list[str]) -> None:
    found = [c for c in checks if c]
    assert not found, "\n".join(found)


# --- reads: what each caller gets ------------------------------------------------------------------------

# path (with {a}, {ab}, {b}, {draft}) → the status each caller gets (None: not asked of that caller)
READS: dict[str, dict[str, int | None]] = {
    "/memoranda":            {ANON: 401, PARTNER_A: 200, PARTNER_B: 200, COMMS: 403, COORD: 200, ADMIN: 200},
    "/memorandum-templates": {ANON: 401, PARTNER_A: 403, PARTNER_B: 403, COMMS: 403, COORD: 200, ADMIN: 200},
    "/memoranda/{a}":        {ANON: 401, PARTNER_A: 200, PARTNER_B: 404, COMMS: 403, COORD: 200, ADMIN: 200},
    "/memoranda/{a}/pdf":    {ANON: 401, PARTNER_A: 200, PARTNER_B: 404, COMMS: 403, COORD: 200, ADMIN: 200},
    "/memoranda/{b}":        {ANON: 401, PARTNER_A: 404, PARTNER_B: 200, COMMS: 403, COORD: 200, ADMIN: 200},
    "/memoranda/{draft}":    {ANON: 401, PARTNER_A: 404, PARTNER_B: 404, COMMS: 403, COORD: 200, ADMIN: 200},
    # A draft's preview is rendered on each request: the coordinator's one render stands for staff.
    "/memoranda/{draft}/pdf": {ANON: 401, PARTNER_A: 404, PARTNER_B: 404, COMMS: 403, COORD: 200, ADMIN: None},
    "/memoranda/999999":     {ANON: 401, PARTNER_A: 404, PARTNER_B: 404, COMMS: 403, COORD: 404, ADMIN: 404},
}  # fmt: skip


def test_who_reads_what(world, targets):
    w = world
    ids = vars(targets)
    problems = []
    for template, expected in READS.items():
        path = template.format(**ids)
        for caller, status in expected.items():
            if status is None:
                continue
            if status != 200:
                problems.append(w.refused("GET", path, caller, status=status))
                continue
            response = w.call("GET", path, caller)
            if response.status_code != 200:
                problems.append(f"{caller}: GET {path}: expected 200, got {response.status_code} {response.text[:200]}")
    problems_of(problems)

    # The 404 for another organisation's memorandum is the 404 of a missing one: nothing tells them apart.
    missing = w.call("GET", "/memoranda/999999", PARTNER_A).json()
    assert w.call("GET", f"/memoranda/{targets.b}", PARTNER_A).json() == missing
    assert w.call("GET", f"/memoranda/{targets.draft}", PARTNER_B).json() == missing


def test_a_partner_lists_only_their_own_issued_memoranda(world, targets):
    w = world

    def listed(caller: str, query: str = "") -> tuple[set[int], int]:
        page = w.call("GET", f"/memoranda{query}", caller).json()
        return {m["id"] for m in page["items"]}, page["total"]

    assert listed(PARTNER_A) == ({targets.a, targets.ab}, 2)
    assert listed(PARTNER_B) == ({targets.ab, targets.b}, 2)
    assert listed(PARTNER_A, "?status=draft") == (set(), 0)
    assert listed(PARTNER_A, f"?organisation_id={w.org_b.id}") == ({targets.ab}, 1)  # never B's own
    assert listed(COORD) == ({targets.a, targets.ab, targets.b, targets.draft}, 4)
    assert listed(ADMIN, "?status=draft") == ({targets.draft}, 1)
    page = w.call("GET", "/memoranda", PARTNER_B).json()
    assert all(m["status"] != "draft" for m in page["items"])


# --- writes: every refusal -------------------------------------------------------------------------------


@dataclass
class Write:
    method: str
    path: str
    body: Callable[[World], Any] | None
    expected: dict[str, int]


def create(w: World) -> dict:
    return create_body([w.org_a])


def naming_b(body: dict) -> Callable[[World], dict]:
    return lambda w: {**body, "organisation_id": w.org_b.id}


STAFF_ONLY = {ANON: 401, PARTNER_A: 403, PARTNER_B: 403, COMMS: 403}
# A party's act on A's memorandum: B is not a party (404); outsiders of every kind are refused.
PARTY_ACT = {ANON: 401, PARTNER_B: 404, COMMS: 403}
WRITES = [
    Write("POST", "/memoranda", create, STAFF_ONLY),
    Write("PATCH", "/memoranda/{draft}", lambda w: {"valid_until": "2099-01-01"}, STAFF_ONLY),
    Write("DELETE", "/memoranda/{draft}", None, STAFF_ONLY),
    Write("POST", "/memoranda/{draft}/issue", None, STAFF_ONLY),
    Write("PATCH", "/memoranda/{a}", lambda w: {"signing_deadline": "2099-01-01"}, STAFF_ONLY),
    Write("POST", "/memoranda/{a}/cancel", lambda w: REASON, STAFF_ONLY),
    Write("POST", "/memoranda/{a}/terminate", lambda w: REASON, STAFF_ONLY),
    Write("POST", "/memoranda/{a}/renew", None, STAFF_ONLY),
    Write("POST", "/memoranda/{a}/signatures", lambda w: SIGNATURE, PARTY_ACT),
    Write("POST", "/memoranda/{a}/decline", lambda w: REASON, PARTY_ACT),
    # A draft is nobody's to sign: a partner does not even see it.
    Write("POST", "/memoranda/{draft}/signatures", lambda w: SIGNATURE, {PARTNER_A: 404, PARTNER_B: 404, COMMS: 403}),
    Write("POST", "/memoranda/{draft}/decline", lambda w: REASON, {PARTNER_A: 404, PARTNER_B: 404, COMMS: 403}),
    # On a memorandum of both, A cannot act for B.
    Write("POST", "/memoranda/{ab}/signatures", naming_b(SIGNATURE), {PARTNER_A: 403}),
    Write("POST", "/memoranda/{ab}/decline", naming_b(REASON), {PARTNER_A: 403}),
    Write("POST", "/memoranda/{b}/signatures", lambda w: SIGNATURE, {PARTNER_A: 404, ANON: 401, COMMS: 403}),
    Write("POST", "/memoranda/{b}/decline", lambda w: REASON, {PARTNER_A: 404, ANON: 401, COMMS: 403}),
]


def test_every_refused_write_says_why_and_changes_nothing(world, targets):
    w = world
    ids = vars(targets)
    problems = []
    for write in WRITES:
        path = write.path.format(**ids)
        for caller, status in write.expected.items():
            body = write.body(w) if write.body else None
            problems.append(w.refused(write.method, path, caller, body, status=status))
    problems_of(problems)


def test_only_staff_record_a_scanned_signature(world, targets):
    w = world
    form = {"signer_name": "Ивана Петрова", "signer_title": "Председател"}
    scan = {"scan": ("scan.pdf", b"%PDF-1.7\n% a scanned copy\n%%EOF\n", "application/pdf")}
    problems = []
    for caller, memorandum_id, status in [
        (ANON, targets.a, 401),
        (COMMS, targets.a, 403),
        (PARTNER_A, targets.a, 403),  # a party, but a scan is staff's record of a wet-ink signature
        (PARTNER_B, targets.a, 404),
    ]:
        before = memoranda_state(w.engine)
        response = w.client.post(
            f"/api/v1/memoranda/{memorandum_id}/signatures/scan", data=form, files=scan, headers=w.headers(caller)
        )
        if response.status_code != status or not response.json().get("detail"):
            problems.append(f"{caller}: expected {status}, got {response.status_code} {response.text[:200]}")
        if memoranda_state(w.engine) != before:
            problems.append(f"{caller}: refused, yet changed something")
    problems_of(problems)


# --- staff do everything ---------------------------------------------------------------------------------


@pytest.mark.parametrize("caller", [COORD, ADMIN])
def test_staff_do_every_action(world, caller):
    w = world

    def act(method: str, path: str, body: Any = None, status: int = 200) -> dict:
        response = w.call(method, path, caller, body)
        assert response.status_code == status, f"{method} {path}: {response.text}"
        return response.json() if status != 204 else {}

    draft = act("POST", "/memoranda", create_body([w.org_a, w.org_b]), 201)
    path = f"/memoranda/{draft['id']}"
    act("PATCH", path, {"sequential": True})
    assert act("POST", f"{path}/issue")["status"] == "issued"
    assert act("PATCH", path, {"signing_deadline": draft["valid_until"]})["signing_deadline"] == draft["valid_until"]
    clicked = w.call("POST", f"{path}/signatures", caller, {**SIGNATURE, "organisation_id": w.org_a.id})
    assert clicked.status_code == 403, clicked.text  # a partner signs in the portal, or on paper
    for org in (w.org_a, w.org_b):
        scanned = w.client.post(
            f"/api/v1{path}/signatures/scan",
            data={"signer_name": "John Smith", "signer_title": "Manager", "organisation_id": str(org.id)},
            files={"scan": ("scan.pdf", b"%PDF-1.7\n% a scanned copy\n%%EOF\n", "application/pdf")},
            headers=w.headers(caller),
        )
        assert scanned.status_code == 200, scanned.text
    assert act("POST", f"{path}/signatures", SIGNATURE)["status"] == "active"  # for the municipality: none named
    assert w.call("GET", f"{path}/pdf", caller).status_code == 200
    renewal = act("POST", f"{path}/renew", None, 201)
    assert act("POST", f"{path}/terminate", REASON)["status"] == "terminated"
    act("DELETE", f"/memoranda/{renewal['id']}", None, 204)

    declined, cancelled = w.build.issued([w.org_a]), w.build.issued([w.org_b])
    body = {**REASON, "organisation_id": w.org_a.id}
    assert act("POST", f"/memoranda/{declined}/decline", body)["status"] == "declined"
    assert act("POST", f"/memoranda/{cancelled}/cancel", REASON)["status"] == "cancelled"
    assert len(act("GET", "/memorandum-templates")) == 10
