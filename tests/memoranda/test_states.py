"""The status machine of memoranda and of their parties, driven through the JSON API.

Every allowed transition answers with the memorandum in its new state; every other action answers 409 with a
message and changes nothing: no memorandum or party row, no queued e-mail, no audit entry.
"""

import hashlib
from datetime import date, timedelta
from typing import Any

import pytest

from service import scheduler
from service.memoranda import jobs
from tests.memoranda.build import create_body, variables
from tests.memoranda.world import STATES, World, audit_actions, days, make_world, outbox, today

IVANA, JOHN, MAYOR = "Ивана Петрова", "John Smith", "Стефан Стефанов"
REASON = "Партньорът прекрати дейността си"


@pytest.fixture
def world(client, session, engine) -> World:
    return make_world(client, session, engine)


def signature(name: str, **extra: Any) -> dict[str, Any]:
    return {"signer_name": name, "signer_title": "Председател", **extra}


def party_statuses(memorandum: dict) -> list[str]:
    return [p["status"] for p in memorandum["parties"]]


def assert_none(problems: list[str]) -> None:
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)


def ok(response: Any, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


# --- every action from every state -----------------------------------------------------------------------

ACTIONS = ("issue", "edit", "extend", "discard", "sign", "decline", "cancel", "terminate", "renew")
# What each allowed action leads to; every action not listed answers 409. The coordinator signs for the
# municipality (party B is still to sign, so the memorandum stays partially signed); declining names party A,
# which has already signed a partially signed memorandum and cannot decline. "renewed": a new draft supersedes it,
# the memorandum itself unchanged (until the renewal is in force).
MACHINE: dict[str, dict[str, str]] = {
    "draft": {"issue": "issued", "edit": "draft", "extend": "draft", "discard": "discarded"},
    "issued": {"extend": "issued", "sign": "partially_signed", "decline": "declined", "cancel": "cancelled"},
    "partially_signed": {"extend": "partially_signed", "sign": "partially_signed", "cancel": "cancelled"},
    "active": {"terminate": "terminated", "renew": "renewed"},
    "declined": {"renew": "renewed"},
    "cancelled": {"renew": "renewed"},
    "terminated": {},
    "expired": {"renew": "renewed"},
    "superseded": {},
}


def request_for(w: World, action: str, memorandum_id: int) -> tuple[str, str, dict | None]:
    """The coordinator's request performing `action`: signing for the municipality, declining for party A."""
    path = f"/memoranda/{memorandum_id}"
    return {
        "issue": ("POST", f"{path}/issue", None),
        "edit": ("PATCH", path, {"variables": {**variables(), "response_hours": 12}}),
        "extend": ("PATCH", path, {"signing_deadline": days(20)}),
        "discard": ("DELETE", path, None),
        "sign": ("POST", f"{path}/signatures", signature(MAYOR)),  # for the municipality
        "decline": ("POST", f"{path}/decline", {"reason": REASON, "organisation_id": w.org_a.id}),
        "cancel": ("POST", f"{path}/cancel", {"reason": REASON}),
        "terminate": ("POST", f"{path}/terminate", {"reason": REASON}),
        "renew": ("POST", f"{path}/renew", None),
    }[action]


def allowed(w: World, state: str, action: str, outcome: str) -> str:
    """Performs an allowed action on a fresh memorandum in `state`; returns what went otherwise than `outcome`."""
    memorandum_id = w.build.in_state(state, [w.org_a, w.org_b])
    method, path, body = request_for(w, action, memorandum_id)
    response = w.call(method, path, "coordinator", body)
    where = f"{state} --{action}-->"
    expected_code = {"discarded": 204, "renewed": 201}.get(outcome, 200)
    if response.status_code != expected_code:
        return f"{where} expected {expected_code}, got {response.status_code} {response.text[:200]}"
    stored = w.call("GET", f"/memoranda/{memorandum_id}", "coordinator")
    if outcome == "discarded":
        return "" if stored.status_code == 404 else f"{where} still there: {stored.status_code}"
    if outcome == "renewed":
        renewal = response.json()
        if (renewal["status"], renewal["supersedes_id"], stored.json()["status"]) != ("draft", memorandum_id, state):
            return f"{where} renewal {renewal['status']} of {renewal['supersedes_id']}, old {stored.json()['status']}"
        return ""
    got = (response.json()["status"], stored.json()["status"])
    return "" if got == (outcome, outcome) else f"{where} answered {got[0]}, stored {got[1]}, expected {outcome}"


def test_every_action_from_every_state(world):
    """Each refused action on one memorandum per state (they change nothing, so they share it); each allowed one
    on a memorandum of its own. All in one database: a database per state costs more than the checks."""
    w = world
    memoranda = {state: w.build.in_state(state, [w.org_a, w.org_b]) for state in STATES}
    assert tuple(MACHINE) == STATES

    problems = []
    for state, outcomes in MACHINE.items():
        for action in ACTIONS:
            if action in outcomes:
                problems.append(allowed(w, state, action, outcomes[action]))
            else:
                method, path, body = request_for(w, action, memoranda[state])
                problems.append(w.refused(method, path, "coordinator", body))

    assert_none(problems)
    listed = w.call("GET", "/memoranda?limit=100", "coordinator").json()["items"]
    assert {m["id"]: m["status"] for m in listed if m["id"] in memoranda.values()} == {
        memorandum_id: state for state, memorandum_id in memoranda.items()
    }


# --- the allowed transitions -----------------------------------------------------------------------------


def test_a_memorandum_is_drafted_issued_signed_by_every_party_and_terminated(world):
    w = world
    created = ok(w.call("POST", "/memoranda", "coordinator", create_body([w.org_a, w.org_b])), 201)
    path = f"/memoranda/{created['id']}"
    assert (created["status"], created["sha256"], created["verification_code"]) == ("draft", None, None)
    assert [p["organisation_id"] for p in created["parties"]] == [w.org_a.id, w.org_b.id, None]  # we sign last
    assert party_statuses(created) == ["pending"] * 3

    changed = ok(w.call("PATCH", path, "coordinator", {"variables": {**variables(), "response_hours": 12}}))
    assert changed["variables"]["response_hours"] == 12 and changed["status"] == "draft"

    issued = ok(w.call("POST", f"{path}/issue", "coordinator"))
    assert issued["status"] == "issued" and issued["issued_at"]
    assert len(issued["sha256"]) == 64 and len(issued["verification_code"]) == 16
    asked = sorted(m.to_address for m in outbox(w.engine) if ":to_sign:" in m.dedupe_key)
    assert asked == ["coordinator@obshtina.example", "ivana@alfa.example", "john@beta.example"]

    # Partner A opens the PDF: their party is now `viewed`; B has not looked.
    opened = w.call("GET", f"{path}/pdf", "partner A")
    assert opened.status_code == 200 and opened.headers["content-type"] == "application/pdf"
    assert hashlib.sha256(opened.content).hexdigest() == issued["sha256"]
    assert party_statuses(ok(w.call("GET", path, "partner A"))) == ["viewed", "pending", "pending"]

    first = ok(w.call("POST", f"{path}/signatures", "partner A", signature(IVANA)))
    assert first["status"] == "partially_signed"
    assert party_statuses(first) == ["signed", "pending", "pending"]
    assert (first["parties"][0]["signer_name"], first["parties"][0]["method"]) == (IVANA, "click")
    assert first["parties"][0]["signed_at"] and first["parties"][0]["viewed_at"]

    second = ok(w.call("POST", f"{path}/signatures", "partner B", signature(JOHN)))
    assert second["status"] == "partially_signed"
    assert party_statuses(second) == ["signed", "signed", "pending"]

    last = ok(w.call("POST", f"{path}/signatures", "coordinator", signature(MAYOR)))
    assert last["status"] == "active" and last["activated_at"]
    assert party_statuses(last) == ["signed"] * 3
    assert last["signed_sha256"] and last["signed_sha256"] != last["sha256"]
    # Opening it once in force changes nothing: `viewed` is about a memorandum awaiting signatures.
    assert w.call("GET", f"{path}/pdf", "partner B").status_code == 200
    assert party_statuses(ok(w.call("GET", path, "partner B"))) == ["signed"] * 3

    ended = ok(w.call("POST", f"{path}/terminate", "coordinator", {"reason": REASON}))
    assert (ended["status"], ended["status_reason"]) == ("terminated", REASON)
    assert audit_actions(w.engine) == [
        "memorandum.create", "memorandum.update", "memorandum.issue", "memorandum.view",
        "memorandum.sign", "memorandum.partially_signed", "memorandum.sign", "memorandum.partially_signed",
        "memorandum.sign", "memorandum.active", "memorandum.final_pdf", "memorandum.terminated",
    ]  # fmt: skip


def test_a_party_declines_with_its_reason_and_the_memorandum_is_declined(world):
    w = world
    path = f"/memoranda/{w.build.issued([w.org_a, w.org_b])}"
    assert ok(w.call("POST", f"{path}/signatures", "partner A", signature(IVANA)))["status"] == "partially_signed"

    # A has signed: it can no longer decline, nor sign again.
    assert w.refused("POST", f"{path}/decline", "partner A", {"reason": REASON}) == ""
    assert w.refused("POST", f"{path}/signatures", "partner A", signature(IVANA)) == ""

    declined = ok(w.call("POST", f"{path}/decline", "partner B", {"reason": "Нямаме капацитет"}))
    assert (declined["status"], declined["status_reason"]) == ("declined", "Нямаме капацитет")
    assert party_statuses(declined) == ["signed", "declined", "pending"]
    party_b = declined["parties"][1]
    assert party_b["decline_reason"] == "Нямаме капацитет" and party_b["declined_at"]
    told = [m for m in outbox(w.engine) if ":staff:" in m.dedupe_key]
    assert [m.to_address for m in told] == ["coordinator@obshtina.example"]
    assert "Нямаме капацитет" in told[0].body

    # Declined is final: no one signs or declines any more.
    assert_none(
        [
            w.refused("POST", f"{path}/decline", "partner B", {"reason": REASON}),
            w.refused("POST", f"{path}/signatures", "partner B", signature(JOHN)),
            w.refused("POST", f"{path}/signatures", "coordinator", signature(MAYOR)),
        ]
    )


def test_staff_cancel_a_memorandum_before_every_party_has_signed(world):
    w = world
    issued = w.build.issued([w.org_a, w.org_b])
    partially_signed = w.build.issued([w.org_a, w.org_b])
    w.build.sign(partially_signed, w.org_a.id)

    for memorandum_id, signed_by_a in [(issued, False), (partially_signed, True)]:
        path = f"/memoranda/{memorandum_id}"
        cancelled = ok(w.call("POST", f"{path}/cancel", "coordinator", {"reason": REASON}))

        assert (cancelled["status"], cancelled["status_reason"]) == ("cancelled", REASON)
        assert party_statuses(cancelled) == ["signed" if signed_by_a else "pending", "pending", "pending"]
        told = [m for m in outbox(w.engine) if f"memorandum:{memorandum_id}:cancelled:" in m.dedupe_key]
        assert sorted(m.to_address for m in told) == [
            "coordinator@obshtina.example", "ivana@alfa.example", "john@beta.example",
        ]  # fmt: skip
        assert all(REASON in m.body for m in told)
        assert w.refused("POST", f"{path}/signatures", "partner B", signature(JOHN)) == ""


def test_a_renewal_is_a_draft_that_supersedes_the_old_memorandum_once_in_force(world):
    w = world
    old = w.build.active([w.org_a])
    old_path = f"/memoranda/{old}"
    stored = w.build.get(old)

    renewal = ok(w.call("POST", f"{old_path}/renew", "coordinator"), 201)

    assert (renewal["status"], renewal["supersedes_id"]) == ("draft", old)
    assert renewal["partner_ids"] == [w.org_a.id]
    assert renewal["variables"] == stored.variables
    assert renewal["valid_from"] == str(stored.valid_until + timedelta(days=1))
    got_old = ok(w.call("GET", old_path, "coordinator"))
    assert (got_old["status"], got_old["superseded_by_id"]) == ("active", renewal["id"])  # not yet: a mere draft

    new_path = f"/memoranda/{renewal['id']}"
    ok(w.call("POST", f"{new_path}/issue", "coordinator"))
    assert ok(w.call("GET", old_path, "partner A"))["status"] == "active"  # issued is not in force either
    ok(w.call("POST", f"{new_path}/signatures", "partner A", signature(IVANA)))
    in_force = ok(w.call("POST", f"{new_path}/signatures", "coordinator", signature(MAYOR)))

    assert in_force["status"] == "active"
    got_old = ok(w.call("GET", old_path, "partner A"))
    assert (got_old["status"], got_old["status_reason"]) == ("superseded", f"#{renewal['id']}")
    assert "memorandum.superseded" in audit_actions(w.engine)
    assert w.refused("POST", f"{old_path}/terminate", "coordinator", {"reason": REASON}) == ""


def test_a_memorandum_in_force_expires_by_the_job_the_day_after_its_valid_until(world, monkeypatch):
    w = world
    monkeypatch.setattr(scheduler, "_engine", w.engine)  # the engine the scheduler's process gives its jobs
    ending_today = w.build.active([w.org_a])
    ended_yesterday = w.build.active([w.org_b])
    w.build.update(ending_today, valid_from=date(2020, 1, 1), valid_until=today())
    w.build.update(ended_yesterday, valid_from=date(2020, 1, 1), valid_until=today() - timedelta(days=1))

    jobs.expire()

    assert ok(w.call("GET", f"/memoranda/{ending_today}", "partner A"))["status"] == "active"
    expired = ok(w.call("GET", f"/memoranda/{ended_yesterday}", "partner B"))
    assert expired["status"] == "expired"
    assert_none(
        [
            w.refused("POST", f"/memoranda/{ended_yesterday}/terminate", "coordinator", {"reason": REASON}),
            w.refused("POST", f"/memoranda/{ended_yesterday}/signatures", "partner B", signature(JOHN)),
        ]
    )
    # An expired memorandum can be renewed; the renewal starts today.
    renewal = ok(w.call("POST", f"/memoranda/{ended_yesterday}/renew", "coordinator"), 201)
    assert (renewal["supersedes_id"], renewal["valid_from"]) == (ended_yesterday, str(today()))


def test_parties_sign_in_order_when_the_memorandum_is_sequential(world):
    w = world
    memorandum_id = w.build.issued([w.org_a, w.org_b], sequential=True)
    path = f"/memoranda/{memorandum_id}"
    # Only the first party is asked to sign at first.
    asked = sorted(m.to_address for m in outbox(w.engine) if ":to_sign:" in m.dedupe_key)
    assert asked == ["ivana@alfa.example"]

    assert_none(
        [
            w.refused("POST", f"{path}/signatures", "partner B", signature(JOHN)),
            w.refused("POST", f"{path}/signatures", "coordinator", signature(MAYOR)),
        ]
    )
    message = w.call("POST", f"{path}/signatures", "partner B", signature(JOHN)).json()["detail"]
    assert "order" in message or "ред" in message

    ok(w.call("POST", f"{path}/signatures", "partner A", signature(IVANA)))
    assert sorted(m.to_address for m in outbox(w.engine) if ":to_sign:" in m.dedupe_key) == [
        "ivana@alfa.example",
        "john@beta.example",
    ]  # now B is asked
    assert w.refused("POST", f"{path}/signatures", "coordinator", signature(MAYOR)) == ""
    assert ok(w.call("POST", f"{path}/signatures", "partner B", signature(JOHN)))["status"] == "partially_signed"
    assert ok(w.call("POST", f"{path}/signatures", "coordinator", signature(MAYOR)))["status"] == "active"


def test_of_an_issued_memorandum_only_the_signing_deadline_can_change(world):
    w = world
    memorandum_id = w.build.issued([w.org_a])
    path = f"/memoranda/{memorandum_id}"

    assert_none(
        [
            w.refused("PATCH", path, "coordinator", {"variables": {**variables(), "response_hours": 12}}),
            w.refused("PATCH", path, "coordinator", {"valid_until": days(400)}),
            w.refused("PATCH", path, "coordinator", {"signing_deadline": days(20), "sequential": True}),
            w.refused("PATCH", path, "coordinator", {"partner_ids": [w.org_b.id]}),
        ]
    )
    extended = ok(w.call("PATCH", path, "coordinator", {"signing_deadline": days(30)}))
    assert (extended["status"], extended["signing_deadline"]) == ("issued", days(30))
    assert extended["sha256"] == w.build.get(memorandum_id).sha256  # the document itself is not touched


def test_a_draft_can_be_changed_and_discarded(world):
    w = world
    memorandum_id = w.build.draft([w.org_a])
    path = f"/memoranda/{memorandum_id}"

    changed = ok(w.call("PATCH", path, "coordinator", {"partner_ids": [w.org_b.id, w.org_a.id], "sequential": True}))
    assert [p["organisation_id"] for p in changed["parties"]] == [w.org_b.id, w.org_a.id, None]
    assert changed["sequential"] is True

    assert w.call("DELETE", path, "coordinator").status_code == 204
    assert w.call("GET", path, "coordinator").status_code == 404
    assert audit_actions(w.engine)[-1] == "memorandum.discard"
