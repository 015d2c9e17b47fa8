"""The status machine of public updates, driven through the JSON API.

Every allowed transition answers with the update in its new state and writes one audit entry; every other
action answers 409 with a message and changes nothing: no update, revision or rumour row, no audit entry.
Four eyes: nobody approves what they wrote. A published update is never edited in place: corrections
add revisions, which the public page shows.
"""

import re
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from service.audit import verify_chain
from service.users.models import User
from tests.bulletins.state import (
    BULLETIN_STATES,
    Newsroom,
    audit_actions,
    bulletin_body,
    changes,
    iso,
    public_state,
)
from tests.factories import api_headers, make_user

B = "/api/v1/bulletins"
NEW_TITLE = "Спиране на водата в кв. „Запад“"
REASON = "Уточнете часа на възстановяване"
FIXED = "Водата е спряна до **20:00 ч.** Цистерна има пред читалището."


@dataclass
class World:
    client: TestClient
    engine: Engine
    news: Newsroom
    author: User
    reviewer: User
    admin: User
    as_author: dict[str, str]
    as_reviewer: dict[str, str]
    as_admin: dict[str, str]

    def call(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
        return self.client.request(method, path, json=body, headers=headers)

    def refused(self, method: str, path: str, headers: dict[str, str], body: Any = None, status: int = 409) -> str:
        """Calls a route that must refuse; returns what is wrong (empty if it refused and changed nothing)."""
        before = public_state(self.engine)
        response = self.call(method, path, headers, body)
        problems = changes(before, public_state(self.engine))
        if response.status_code != status:
            return f"{method} {path}: expected {status}, got {response.status_code} {response.text[:200]}"
        if not response.json().get("detail"):
            return f"{method} {path}: a refusal that says nothing"
        return f"{method} {path}: refused, yet changed {problems}" if problems else ""


@pytest.fixture
def world(client, session, engine) -> World:
    author = make_user(session, "communications", email="author@example.test")
    reviewer = make_user(session, "communications", email="reviewer@example.test")
    admin = make_user(session, "admin", email="admin@example.test")
    return World(
        client=client,
        engine=engine,
        news=Newsroom(engine, author, reviewer),
        author=author,
        reviewer=reviewer,
        admin=admin,
        as_author=api_headers(client, author),
        as_reviewer=api_headers(client, reviewer),
        as_admin=api_headers(client, admin),
    )


def ok(response: Any, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def assert_none(problems: list[str]) -> None:
    """Every check's problem (an empty string where it went right), reported all together."""
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)


# --- every action from every state -----------------------------------------------------------------------

ACTIONS = ("edit", "delete", "submit", "approve", "schedule", "send_back", "correct", "retract")
# What each action leads to; 409 where the status machine refuses it.
MACHINE = {
    # state        edit     delete     submit       approve      schedule     send_back correct      retract
    "draft":     ("draft", "deleted", "in_review", 409,         409,         409,      409,         409),
    "in_review": (409,     409,       409,         "published", "scheduled", "draft",  409,         409),
    "scheduled": (409,     409,       409,         409,         409,         "draft",  409,         409),
    "published": (409,     409,       409,         409,         409,         409,      "published", "retracted"),
    "corrected": (409,     409,       409,         409,         409,         409,      "published", "retracted"),
    "retracted": (409,     409,       409,         409,         409,         409,      409,         409),
}  # fmt: skip
AUDITED = {
    "edit": "bulletin.update", "delete": "bulletin.discard", "submit": "bulletin.submit", "approve": "bulletin.approve",
    "schedule": "bulletin.schedule", "send_back": "bulletin.send_back", "correct": "bulletin.correct",
    "retract": "bulletin.retract",
}  # fmt: skip


def request_for(w: World, action: str, bulletin_id: int) -> tuple[str, str, dict[str, str], Any]:
    """The request performing `action`: the author writes, edits, submits and corrects; the reviewer
    approves, schedules, sends back and retracts."""
    path = f"{B}/{bulletin_id}"
    return {
        "edit": ("PATCH", path, w.as_author, {"title": NEW_TITLE}),
        "delete": ("DELETE", path, w.as_author, None),
        "submit": ("POST", f"{path}/submit", w.as_author, None),
        "approve": ("POST", f"{path}/approve", w.as_reviewer, None),
        "schedule": ("POST", f"{path}/approve", w.as_reviewer, {"publish_at": iso(3600)}),
        "send_back": ("POST", f"{path}/send-back", w.as_reviewer, {"reason": REASON}),
        "correct": ("POST", f"{path}/corrections", w.as_author, {"body": FIXED, "reason": "Удължен срок"}),
        "retract": ("POST", f"{path}/retract", w.as_reviewer, {"reason": "Авария е отстранена"}),
    }[action]


def test_the_machine_covers_every_state_the_builder_makes():
    assert set(MACHINE) == set(BULLETIN_STATES)


@pytest.mark.parametrize("state", BULLETIN_STATES)
def test_every_action_from_every_state(world, state):
    w = world
    problems = []
    for action, expected in zip(ACTIONS, MACHINE[state], strict=True):
        bid = w.news.bulletin(state)
        method, path, headers, body = request_for(w, action, bid)
        if expected == 409:
            problems.append(w.refused(method, path, headers, body))
            continue
        was = w.call("GET", f"{B}/{bid}", w.as_author).json()
        audited = audit_actions(w.engine, bid)
        before = public_state(w.engine)
        response = w.call(method, path, headers, body)
        where = f"{state} {action}"
        wanted = {"delete": 204, "correct": 201}.get(action, 200)
        if response.status_code != wanted:
            problems.append(f"{where}: got {response.status_code} {response.text[:200]}")
            continue
        touched = {line.split(":")[0] for line in changes(before, public_state(w.engine))}
        new_revisions = {t for t in touched if t.startswith("BulletinRevision ")}
        if touched - {f"Bulletin {bid}", "audit_rows", "audit_head"} - new_revisions:
            problems.append(f"{where}: changed more than the update: {sorted(touched)}")
        if len(new_revisions) != (1 if action in ("approve", "correct") else 0):
            problems.append(f"{where}: added revisions {sorted(new_revisions)}")
        if audit_actions(w.engine, bid) != [*audited, AUDITED[action]]:
            problems.append(f"{where}: audited {audited} -> {audit_actions(w.engine, bid)}")
        stored = w.call("GET", f"{B}/{bid}", w.as_author)
        if action == "delete":
            if stored.status_code != 404:
                problems.append(f"{where}: still there ({stored.status_code})")
            continue
        now = stored.json()
        if response.json()["status"] != expected or now["status"] != expected:
            problems.append(f"{where}: answered {response.json()['status']}, stored {now['status']}, not {expected}")
        expected_revision = {"approve": 1, "correct": was["revision"] + 1}.get(action, was["revision"])
        if now["revision"] != expected_revision:
            problems.append(f"{where}: revision {was['revision']} -> {now['revision']}, not {expected_revision}")
    assert_none(problems)


def test_each_transition_sets_its_fields(world):
    w = world
    bid = w.news.bulletin("draft")
    edited = ok(w.call("PATCH", f"{B}/{bid}", w.as_author, {"title": NEW_TITLE, "urgency": "Expected"}))
    assert (edited["title"], edited["urgency"], edited["status"]) == (NEW_TITLE, "Expected", "draft")

    submitted = ok(w.call("POST", f"{B}/{bid}/submit", w.as_author))
    assert submitted["submitted_at"] and submitted["status"] == "in_review"

    sent_back = ok(w.call("POST", f"{B}/{bid}/send-back", w.as_reviewer, {"reason": REASON}))
    assert (sent_back["status"], sent_back["review_note"]) == ("draft", REASON)

    ok(w.call("POST", f"{B}/{bid}/submit", w.as_author))
    scheduled = ok(w.call("POST", f"{B}/{bid}/approve", w.as_reviewer, {"publish_at": iso(7200)}))
    assert scheduled["status"] == "scheduled" and scheduled["review_note"] == ""
    assert scheduled["approved_by_id"] == w.reviewer.id and scheduled["published_at"] is None
    assert scheduled["revision"] == 0

    # Sent back before its time, it is a draft again with no approval left on it; the time stays on the
    # draft for its author to keep or clear.
    again = ok(w.call("POST", f"{B}/{bid}/send-back", w.as_reviewer, {"reason": REASON}))
    assert (again["status"], again["approved_by_id"], again["approved_at"]) == ("draft", None, None)
    assert again["publish_at"] == scheduled["publish_at"]
    assert ok(w.call("PATCH", f"{B}/{bid}", w.as_author, {"publish_at": None}))["publish_at"] is None

    ok(w.call("POST", f"{B}/{bid}/submit", w.as_author))
    published = ok(w.call("POST", f"{B}/{bid}/approve", w.as_reviewer))
    assert published["status"] == "published" and published["published_at"] and published["revision"] == 1
    assert published["approved_by_id"] == w.reviewer.id

    retracted = ok(w.call("POST", f"{B}/{bid}/retract", w.as_reviewer, {"reason": "Авария е отстранена"}))
    assert retracted["status"] == "retracted" and retracted["retracted_at"]
    assert retracted["retraction_reason"] == "Авария е отстранена"


def test_a_draft_with_its_own_publish_time_is_scheduled_by_the_approval(world):
    w = world
    later = iso(1800)
    bid = ok(w.call("POST", B, w.as_author, bulletin_body(publish_at=later)), 201)["id"]
    ok(w.call("POST", f"{B}/{bid}/submit", w.as_author))

    approved = ok(w.call("POST", f"{B}/{bid}/approve", w.as_reviewer))

    assert approved["status"] == "scheduled" and approved["published_at"] is None


# --- four eyes -------------------------------------------------------------------------------------------


def test_the_author_cannot_approve_their_own_update(world, session):
    w = world
    bid = w.news.bulletin("in_review")
    assert_none(
        [
            w.refused("POST", f"{B}/{bid}/approve", w.as_author, None, status=403),
            w.refused("POST", f"{B}/{bid}/approve", w.as_author, {"publish_at": iso(600)}, status=403),
        ]
    )
    # Sent back, changed and submitted again: still the author's.
    ok(w.call("POST", f"{B}/{bid}/send-back", w.as_reviewer, {"reason": REASON}))
    ok(w.call("PATCH", f"{B}/{bid}", w.as_author, {"title": NEW_TITLE}))
    ok(w.call("POST", f"{B}/{bid}/submit", w.as_author))
    assert w.refused("POST", f"{B}/{bid}/approve", w.as_author, None, status=403) == ""

    # An administrator who wrote an update is its author like anyone else.
    own = ok(w.call("POST", B, w.as_admin, bulletin_body()), 201)["id"]
    ok(w.call("POST", f"{B}/{own}/submit", w.as_admin))
    assert w.refused("POST", f"{B}/{own}/approve", w.as_admin, None, status=403) == ""

    # Another communications officer, or an administrator who is not the author, may approve.
    assert ok(w.call("POST", f"{B}/{bid}/approve", w.as_reviewer))["approved_by_id"] == w.reviewer.id
    assert ok(w.call("POST", f"{B}/{own}/approve", w.as_reviewer))["status"] == "published"
    theirs = w.news.bulletin("in_review")
    assert ok(w.call("POST", f"{B}/{theirs}/approve", w.as_admin))["approved_by_id"] == w.admin.id


# --- corrections and revisions ---------------------------------------------------------------------------


def test_a_correction_that_changes_nothing_is_refused(world):
    w = world
    bid = w.news.bulletin("published")
    current = w.call("GET", f"{B}/{bid}", w.as_author).json()
    same = {"body": current["body"], "reason": "Няма промяна"}
    assert_none(
        [
            w.refused("POST", f"{B}/{bid}/corrections", w.as_author, same, status=422),
            w.refused("POST", f"{B}/{bid}/corrections", w.as_author, {**same, "body": f"  {current['body']}\n"}, 422),
            w.refused("POST", f"{B}/{bid}/corrections", w.as_author, {**same, "title": current["title"]}, status=422),
            w.refused(
                "POST", f"{B}/{bid}/corrections", w.as_author, {**same, "instruction": current["instruction"]}, 422
            ),
        ]
    )
    refusal = w.call("POST", f"{B}/{bid}/corrections", w.as_author, same).json()["detail"]
    assert refusal[0]["loc"] == ["body", "body"] and refusal[0]["msg"]
    # A new title alone is a correction.
    corrected = ok(w.call("POST", f"{B}/{bid}/corrections", w.as_author, {**same, "title": NEW_TITLE}), 201)
    assert (corrected["title"], corrected["revision"]) == (NEW_TITLE, 2)


def test_revisions_list_what_the_public_saw_and_the_page_shows_the_history(world, client):
    w = world
    bid = w.news.bulletin("published", title="Free water at the community centre", language="en",
                          body="Water is handed out **until 18:00**.")  # fmt: skip
    corrections = [
        {"body": "Water is handed out **until 20:00**.", "reason": "Hours extended by the water company"},
        {"body": "Water is handed out **until 20:00**, two litres a person.", "reason": "Ration added",
         "title": "Free drinking water at the community centre", "instruction": "Bring your own bottles."},
    ]  # fmt: skip
    for number, correction in enumerate(corrections, start=2):
        assert ok(w.call("POST", f"{B}/{bid}/corrections", w.as_author, correction), 201)["revision"] == number

    revisions = ok(w.call("GET", f"{B}/{bid}/revisions", w.as_author))
    assert [r["number"] for r in revisions] == [1, 2, 3]
    assert [r["reason"] for r in revisions] == ["", *(c["reason"] for c in corrections)]
    assert [r["body"] for r in revisions] == ["Water is handed out **until 18:00**.", *(c["body"] for c in corrections)]
    assert [r["title"] for r in revisions][-1] == "Free drinking water at the community centre"
    assert revisions[-1]["instruction"] == "Bring your own bottles."
    stored = ok(w.call("GET", f"{B}/{bid}", w.as_author))
    assert (stored["body"], stored["revision"], stored["status"]) == (corrections[1]["body"], 3, "published")
    assert stored["corrected_at"] and stored["corrected_at"] >= stored["published_at"]

    page = client.get(f"/updates/{bid}?lang=en")
    assert page.status_code == 200
    html = page.text
    assert "corrected on" in html and "Revision history" in html
    for correction in corrections:
        assert correction["reason"] in html
    assert "<strong>until 20:00</strong>, two litres a person." in html  # the current text, rendered
    assert "<strong>until 18:00</strong>" in html  # revision 1 in the history
    history = html[html.index("Revision history") :]
    assert len(re.findall(r"<li value=\"\d+\">", history)) == 3
    listed = client.get("/api/v1/public/updates?language=en").json()["items"]
    assert [(u["id"], u["revision"], u["title"]) for u in listed] == [
        (bid, 3, "Free drinking water at the community centre")
    ]
    assert listed[0]["corrected_at"]


def test_an_update_never_corrected_has_no_history_on_its_page(world, client):
    w = world
    bid = w.news.bulletin("published", language="en", title="Roads open again")
    html = client.get(f"/updates/{bid}?lang=en").text
    assert "Roads open again" in html
    assert "corrected on" not in html and "Revision history" not in html


def test_a_retracted_update_keeps_its_page_with_the_notice(world, client):
    w = world
    bid = w.news.bulletin("published", language="en", title="Shelter at the sports hall")
    ok(w.call("POST", f"{B}/{bid}/retract", w.as_reviewer, {"reason": "The hall is flooded"}))

    page = client.get(f"/updates/{bid}?lang=en")

    assert page.status_code == 200
    assert "This update was retracted on" in page.text and "The hall is flooded" in page.text
    assert "Shelter at the sports hall" in page.text


# --- the audit trail -------------------------------------------------------------------------------------


def test_every_change_is_audited_and_the_chain_holds(world, engine):
    w = world
    bid = ok(w.call("POST", B, w.as_author, bulletin_body()), 201)["id"]
    ok(w.call("PATCH", f"{B}/{bid}", w.as_author, {"title": NEW_TITLE}))
    ok(w.call("POST", f"{B}/{bid}/submit", w.as_author))
    ok(w.call("POST", f"{B}/{bid}/send-back", w.as_reviewer, {"reason": REASON}))
    ok(w.call("POST", f"{B}/{bid}/submit", w.as_author))
    ok(w.call("POST", f"{B}/{bid}/approve", w.as_reviewer))
    ok(w.call("POST", f"{B}/{bid}/corrections", w.as_author, {"body": FIXED, "reason": "Удължен срок"}), 201)
    ok(w.call("POST", f"{B}/{bid}/retract", w.as_reviewer, {"reason": "Авария е отстранена"}))
    gone = ok(w.call("POST", B, w.as_author, bulletin_body()), 201)["id"]
    assert w.call("DELETE", f"{B}/{gone}", w.as_author).status_code == 204

    entries = ok(w.call("GET", f"/api/v1/audit?entity=bulletin&entity_id={bid}", w.as_admin))[::-1]

    steps = [
        ("bulletin.create", w.author, None, "draft"),
        ("bulletin.update", w.author, "draft", "draft"),
        ("bulletin.submit", w.author, "draft", "in_review"),
        ("bulletin.send_back", w.reviewer, "in_review", "draft"),
        ("bulletin.submit", w.author, "draft", "in_review"),
        ("bulletin.approve", w.reviewer, "in_review", "published"),
        ("bulletin.correct", w.author, "published", "published"),
        ("bulletin.retract", w.reviewer, "published", "retracted"),
    ]
    assert [(e["action"], e["actor_id"]) for e in entries] == [(a, u.id) for a, u, _, _ in steps]
    assert [((e["before"] or {}).get("status"), e["after"]["status"]) for e in entries] == [
        (b, a) for _, _, b, a in steps
    ]
    assert entries[1]["after"]["title"] == NEW_TITLE
    assert (entries[6]["before"]["revision"], entries[6]["after"]["revision"]) == (1, 2)
    discarded = ok(w.call("GET", f"/api/v1/audit?entity=bulletin&entity_id={gone}", w.as_admin))
    assert [e["action"] for e in discarded] == ["bulletin.discard", "bulletin.create"]
    assert discarded[0]["before"]["status"] == "draft" and discarded[0]["after"] is None
    with Session(engine) as s:
        checked, broken = verify_chain(s)
    assert broken is None and checked >= len(entries) + 2


def test_the_audit_log_is_the_administrators(world):
    w = world
    w.news.bulletin("published")
    assert w.call("GET", "/api/v1/audit?entity=bulletin", w.as_author).status_code == 403
    assert w.call("GET", "/api/v1/audit?entity=bulletin", {}).status_code == 401
