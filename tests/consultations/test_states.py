"""The status machine of consultations, submissions revised in place, and decisions with their votes, driven
through the JSON API.

Every allowed transition answers with the object in its new state and leaves an audit entry; every other action
answers 409 (or 404 where a partner may not see the consultation at all) and changes nothing: no row, no queued
e-mail, no audit entry. The audit chain verifies after all of it.
"""

import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from service.audit import AuditEntry
from service.consultations.models import DecisionVote, Submission
from service.i18n import gettext_in
from service.partners import service as partners
from service.partners.models import Organisation
from service.users.models import User
from tests.consultations.state import (
    API,
    STATES,
    Consultations,
    audit_entries,
    chain_holds,
    changes,
    consultation_body,
    consultations_state,
    decision_body,
    iso,
)
from tests.factories import api_headers, make_partner, make_user

CLOSED = "The consultation is closed: submissions are no longer accepted."
NOT_YET = "The consultation opens for submissions on {when}."
EN = {"Accept-Language": "en"}


@dataclass
class World:
    client: TestClient
    engine: Engine
    build: Consultations
    coordinator: User
    org_a: Organisation
    org_b: Organisation
    org_c: Organisation  # verified, never invited
    rep_a: User
    rep_b: User
    staff: dict[str, str]
    partner_a: dict[str, str]
    partner_b: dict[str, str]

    def call(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
        return self.client.request(method, path, json=body, headers={**headers, **EN})

    def refused(self, method: str, path: str, headers: dict[str, str], body: Any = None, status: int = 409) -> str:
        """Calls a route that must refuse; returns what is wrong (empty if it refused and changed nothing)."""
        before = consultations_state(self.engine)
        response = self.call(method, path, headers, body)
        problems = changes(before, consultations_state(self.engine))
        if response.status_code != status:
            return f"{method} {path}: expected {status}, got {response.status_code} {response.text[:200]}"
        if not response.json().get("detail"):
            return f"{method} {path}: a refusal that says nothing"
        return f"{method} {path}: refused, yet changed {problems[:3]}" if problems else ""


@pytest.fixture
def world(client, session, engine) -> World:
    coordinator = make_user(session, "coordinator")
    org_a = make_partner(session, name="Сдружение „Алфа“")
    org_b = make_partner(session, name="Камара „Бета“", kind="professional_association")
    org_c = make_partner(session, name="„Гама“ ООД", kind="business")
    partners.verify(session=session, actor=coordinator, org=org_c)
    rep_a = make_user(session, "partner", organisation=org_a, email="ivana@alfa.example")
    rep_b = make_user(session, "partner", organisation=org_b, email="john@beta.example", language="en")
    return World(
        client=client,
        engine=engine,
        build=Consultations(engine, coordinator),
        coordinator=coordinator,
        org_a=org_a,
        org_b=org_b,
        org_c=org_c,
        rep_a=rep_a,
        rep_b=rep_b,
        staff=api_headers(client, coordinator),
        partner_a=api_headers(client, rep_a),
        partner_b=api_headers(client, rep_b),
    )


def assert_none(problems: list[str]) -> None:
    """Every check's problem (an empty string where it went right), reported all together."""
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)


# --- the whole way through -------------------------------------------------------------------------------


def test_a_consultation_goes_from_draft_to_a_published_decision_and_every_step_is_audited(world):
    w = world
    created = w.call("POST", API, w.staff, consultation_body([w.org_a.id, w.org_b.id]))
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    assert created.json()["status"] == "draft" and created.json()["accepting"] is False
    assert created.json()["invited_ids"] == sorted([w.org_a.id, w.org_b.id])

    edited = w.call("PATCH", f"{API}/{cid}", w.staff, {"title": "Мерки след наводнението", "invited_ids": [w.org_a.id]})
    assert edited.status_code == 200, edited.text
    assert (edited.json()["title"], edited.json()["invited_ids"]) == ("Мерки след наводнението", [w.org_a.id])
    edited = w.call("PATCH", f"{API}/{cid}", w.staff, {"invited_ids": [w.org_a.id, w.org_b.id]})
    assert edited.json()["invited_ids"] == sorted([w.org_a.id, w.org_b.id])

    opened = w.call("POST", f"{API}/{cid}/open", w.staff)
    assert opened.status_code == 200, opened.text
    assert opened.json()["status"] == "open" and opened.json()["accepting"] is True and opened.json()["opened_at"]

    first = w.call("POST", f"{API}/{cid}/submissions", w.partner_a, {"position": "amend", "comments": "Срок 12 м."})
    assert first.status_code == 201, first.text
    revised = w.call("POST", f"{API}/{cid}/submissions", w.partner_a, {"position": "support", "public": True})
    assert revised.status_code == 200, revised.text
    assert (revised.json()["id"], revised.json()["revision"]) == (first.json()["id"], 2)
    other = w.call("POST", f"{API}/{cid}/submissions", w.partner_b, {"position": "oppose"})
    assert other.status_code == 201, other.text

    closed = w.call("POST", f"{API}/{cid}/close", w.staff)
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed" and closed.json()["accepting"] is False and closed.json()["closed_at"]

    votes = {w.org_a.id: "for", w.org_b.id: "against"}
    recorded = w.call("POST", f"{API}/{cid}/decision", w.staff, decision_body(votes))
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["published_at"] is None
    assert w.call("GET", f"{API}/{cid}", w.staff).json()["status"] == "decided"
    votes[w.org_b.id] = "abstain"  # recorded again before publishing: replaced
    recorded = w.call("POST", f"{API}/{cid}/decision", w.staff, decision_body(votes, text="Приема мерките."))
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["tally"] == {"for": 1, "against": 0, "abstain": 1}

    published = w.call("POST", f"{API}/{cid}/decision/publish", w.staff)
    assert published.status_code == 200, published.text
    assert published.json()["published_at"] and published.json()["text"] == "Приема мерките."
    assert published.json()["id"] == recorded.json()["id"]

    # Each change is one audit entry, in order, naming what it changed with its state before and after.
    entries = audit_entries(w.engine, "consultation.", "submission.", "decision.")
    assert [(e.action, e.entity, e.entity_id) for e in entries] == [
        ("consultation.create", "consultation", cid),
        ("consultation.update", "consultation", cid),
        ("consultation.update", "consultation", cid),
        ("consultation.open", "consultation", cid),
        ("submission.create", "submission", first.json()["id"]),
        ("submission.revise", "submission", first.json()["id"]),
        ("submission.create", "submission", other.json()["id"]),
        ("consultation.close", "consultation", cid),
        ("decision.record", "decision", recorded.json()["id"]),
        ("decision.record", "decision", recorded.json()["id"]),
        ("decision.publish", "decision", recorded.json()["id"]),
    ]
    assert [e.actor_id for e in entries[4:7]] == [w.rep_a.id, w.rep_a.id, w.rep_b.id]
    assert {e.actor_id for e in entries if not e.action.startswith("submission")} == {w.coordinator.id}

    update = entries[1]
    assert audited(update, "before")["title"] == consultation_body([])["title"]
    assert audited(update, "after")["title"] == "Мерки след наводнението"
    assert audited(update, "before")["invited_ids"] == sorted([w.org_a.id, w.org_b.id])
    assert (audited(entries[3], "before")["status"], audited(entries[3], "after")["status"]) == ("draft", "open")
    assert (audited(entries[5], "before")["position"], audited(entries[5], "after")["position"]) == ("amend", "support")
    assert (audited(entries[7], "before")["status"], audited(entries[7], "after")["status"]) == ("open", "closed")
    assert audited(entries[9], "before")["votes"][1]["vote"] == "against"
    assert audited(entries[9], "after")["votes"][1]["vote"] == "abstain"
    assert audited(entries[10], "before")["published_at"] is None and audited(entries[10], "after")["published_at"]
    assert chain_holds(w.engine)


# --- every action from every state -----------------------------------------------------------------------

ACTIONS = ("edit", "open", "close", "submit", "decide", "publish")
MACHINE = {
    # state       edit  open      close     submit  decide     publish
    "draft":     (200,  "open",   409,      404,    409,       409),
    "scheduled": (409,  409,      "closed", 409,    409,       409),
    "open":      (409,  409,      "closed", 201,    409,       409),
    "overdue":   (409,  409,      "closed", 409,    409,       409),
    "closed":    (409,  409,      409,      409,    "decided", 409),
    "decided":   (409,  409,      409,      409,    "decided", "published"),
    "published": (409,  409,      409,      409,    409,       409),
}  # fmt: skip


def action_request(w: World, action: str, cid: int) -> tuple[str, str, dict[str, str], Any]:
    """The request that performs `action`, by the caller who may."""
    path = f"{API}/{cid}"
    return {
        "edit": ("PATCH", path, w.staff, {"question": "Подкрепяте ли мерките с изменения?"}),
        "open": ("POST", f"{path}/open", w.staff, None),
        "close": ("POST", f"{path}/close", w.staff, None),
        "submit": ("POST", f"{path}/submissions", w.partner_a, {"position": "amend", "comments": "Още един срок."}),
        "decide": ("POST", f"{path}/decision", w.staff, decision_body({w.org_a.id: "for"})),
        "publish": ("POST", f"{path}/decision/publish", w.staff, None),
    }[action]


def status_after(w: World, cid: int) -> str:
    consultation = w.call("GET", f"{API}/{cid}", w.staff).json()["status"]
    decision = w.call("GET", f"{API}/{cid}/decision", w.staff)
    return "published" if decision.status_code == 200 and decision.json()["published_at"] else consultation


def still(state: str) -> str:
    """The status a built state shows: `scheduled` and `overdue` are open ones."""
    return "open" if state in ("scheduled", "overdue") else state


@pytest.mark.parametrize("state", STATES)
def test_every_action_from_every_state(world, state):
    """Each action from each state: the allowed ones answer the new state and change only their consultation's
    rows (and the audit log); the rest are refused with a message and change nothing."""
    w = world
    problems = []
    earlier = None if state in ("draft", "scheduled") else {w.org_b.id: w.rep_b}  # another organisation's
    for action, expected in zip(ACTIONS, MACHINE[state], strict=True):
        cid = w.build.make(state, [w.org_a.id, w.org_b.id], submissions=earlier)
        method, path, headers, body = action_request(w, action, cid)
        if expected in (404, 409):
            problems.append(w.refused(method, path, headers, body, expected))
            if status_after(w, cid) != still(state):
                problems.append(f"{state} {action}: the state moved to {status_after(w, cid)}")
            continue
        before = consultations_state(w.engine)
        response = w.call(method, path, headers, body)
        if response.status_code not in (200, 201):
            problems.append(f"{state} {action}: got {response.status_code} {response.text[:200]}")
            continue
        after = consultations_state(w.engine)
        if after["audit_rows"] <= before["audit_rows"]:
            problems.append(f"{state} {action}: a change that left no audit entry")
        # An edit or a submission leaves the state where it was; a transition names the state it leads to.
        new_state = expected if isinstance(expected, str) else still(state)
        if status_after(w, cid) != new_state:
            problems.append(f"{state} {action}: now {status_after(w, cid)}, expected {new_state}")
    assert_none(problems)
    assert chain_holds(w.engine)


def test_opening_needs_someone_to_invite_and_a_closing_time_still_ahead(world):
    w = world
    nobody = w.build.make("draft", [])
    assert w.refused("POST", f"{API}/{nobody}/open", w.staff, status=422) == ""
    too_late = w.build.make("draft", [w.org_a.id], opens_at=iso(-120), closes_at=iso(-60))
    assert w.refused("POST", f"{API}/{too_late}/open", w.staff, status=422) == ""
    # Open to all verified partners, it needs no invitation.
    to_all = w.build.make("draft", [], open_to_all=True)
    assert w.call("POST", f"{API}/{to_all}/open", w.staff).json()["status"] == "open"


# --- submissions -----------------------------------------------------------------------------------------


def test_a_submission_after_closing_is_refused_with_a_clear_message(world):
    """Closed by staff, past its closing time before the job ran, or decided: the same plain refusal, in the
    reader's language, and the submission stays as it was. Before its opening time the refusal says when."""
    w = world
    problems = []
    for state in ("closed", "overdue", "decided", "published"):
        cid = w.build.make(state, [w.org_a.id], submissions={w.org_a.id: w.rep_a})
        mine = w.call("GET", f"{API}/{cid}/submissions", w.partner_a).json()
        for language in ("en", "bg"):
            before = consultations_state(w.engine)
            response = w.client.post(
                f"{API}/{cid}/submissions",
                json={"position": "oppose", "comments": "Късно мнение."},
                headers={**w.partner_a, "Accept-Language": language},
            )
            if response.status_code != 409 or response.json()["detail"] != gettext_in(language)(CLOSED):
                problems.append(f"{state} ({language}): {response.status_code} {response.text[:200]}")
            if changed := changes(before, consultations_state(w.engine)):
                problems.append(f"{state}: refused, yet changed {changed[:2]}")
        if w.call("GET", f"{API}/{cid}/submissions", w.partner_a).json() != mine:
            problems.append(f"{state}: the submission changed")
    assert_none(problems)

    scheduled = w.build.make("scheduled", [w.org_a.id])
    opens_at = w.build.get(scheduled).opens_at
    response = w.call("POST", f"{API}/{scheduled}/submissions", w.partner_a, {"position": "support"})
    assert response.status_code == 409
    assert response.json()["detail"] == NOT_YET.format(when=opens_at.isoformat())
    assert w.refused("POST", f"{API}/{scheduled}/submissions", w.partner_a, {"position": "support"}) == ""


def test_submissions_are_revised_in_place_one_row_per_organisation_until_closing(world, session):
    w = world
    second_a = make_user(session, "partner", organisation=w.org_a, email="mihail@alfa.example")
    second = api_headers(w.client, second_a)
    cid = w.build.make("open", [w.org_a.id, w.org_b.id])
    path = f"{API}/{cid}/submissions"

    answers = [
        w.call("POST", path, w.partner_a, {"position": "support"}),
        w.call("POST", path, w.partner_a, {"position": "amend", "comments": "Срокът да е 12 месеца."}),
        w.call("POST", path, second, {"position": "amend", "comments": "Срокът да е 9 месеца.", "public": True}),
        w.call("POST", path, w.partner_a, {"position": "oppose", "comments": "Против.", "public": False}),
    ]
    assert [a.status_code for a in answers] == [201, 200, 200, 200]
    assert [a.json()["revision"] for a in answers] == [1, 2, 3, 4]
    assert {a.json()["id"] for a in answers} == {answers[0].json()["id"]}
    assert {a.json()["submitted_at"] for a in answers} == {answers[0].json()["submitted_at"]}
    updated = [a.json()["updated_at"] for a in answers]
    assert updated == sorted(updated) and len(set(updated)) == 4
    b = w.call("POST", path, w.partner_b, {"position": "support", "public": True})
    assert b.status_code == 201 and b.json()["revision"] == 1 and b.json()["id"] != answers[0].json()["id"]

    with Session(w.engine) as s:
        rows = s.exec(select(Submission).where(Submission.consultation_id == cid)).all()
    assert sorted((r.organisation_id, r.position, r.comments, r.public, r.revision) for r in rows) == sorted(
        [(w.org_a.id, "oppose", "Против.", False, 4), (w.org_b.id, "support", "", True, 1)]
    )
    assert {r.submitted_by_id for r in rows if r.organisation_id == w.org_a.id} == {w.rep_a.id}  # the last to revise
    staff_view = w.call("GET", path, w.staff).json()
    assert sorted((s["organisation_id"], s["revision"]) for s in staff_view) == sorted(
        [(w.org_a.id, 4), (w.org_b.id, 1)]
    )

    assert w.call("POST", f"{API}/{cid}/close", w.staff).status_code == 200
    assert w.refused("POST", path, w.partner_a, {"position": "support"}) == ""
    assert w.refused("POST", path, second, {"position": "support"}) == ""
    assert [s["revision"] for s in w.call("GET", path, w.partner_a).json()] == [4]
    actions = Counter((e.action, e.entity_id) for e in audit_entries(w.engine, "submission."))
    sid_a, sid_b = answers[0].json()["id"], b.json()["id"]
    assert actions == {
        ("submission.create", sid_a): 1,
        ("submission.revise", sid_a): 3,
        ("submission.create", sid_b): 1,
    }
    assert chain_holds(w.engine)


# --- votes and the tally ---------------------------------------------------------------------------------


def audited(entry: AuditEntry, side: str) -> dict[str, Any]:
    """An audit entry's recorded state `before` or `after` the change."""
    return json.loads(getattr(entry, side))


def error_locations(response: Any) -> dict[tuple, str]:
    return {tuple(item["loc"]): item["msg"] for item in response.json()["detail"]}


def test_votes_only_from_invited_organisations_each_once(world, session):
    w = world
    unverified = make_partner(session, name="Сдружение „Делта“")
    cid = w.build.make("closed", [w.org_a.id, w.org_b.id])
    path = f"{API}/{cid}/decision"
    for votes, index in [
        ([(w.org_a.id, "for"), (w.org_c.id, "against")], 1),  # verified, but not invited
        ([(unverified.id, "for")], 0),
        ([(999_999, "abstain"), (w.org_a.id, "for")], 0),  # no such organisation
        ([(w.org_a.id, "for"), (w.org_b.id, "for"), (w.org_a.id, "against")], 2),  # org A twice
    ]:
        body = decision_body() | {"votes": [{"organisation_id": o, "vote": v} for o, v in votes]}
        before = consultations_state(w.engine)
        response = w.call("POST", path, w.staff, body)
        assert response.status_code == 422, response.text
        assert list(error_locations(response)) == [("body", "votes", str(index), "organisation_id")], response.text
        assert changes(before, consultations_state(w.engine)) == []
    assert w.call("GET", f"{API}/{cid}", w.staff).json()["status"] == "closed"

    # Open to all: every verified partner may vote, an unverified one still may not.
    to_all = w.build.make("closed", [w.org_a.id], open_to_all=True)
    ok = w.call("POST", f"{API}/{to_all}/decision", w.staff, decision_body({w.org_a.id: "for", w.org_c.id: "against"}))
    assert ok.status_code == 201, ok.text
    refused = w.call("POST", f"{API}/{to_all}/decision", w.staff, decision_body({unverified.id: "for"}))
    assert list(error_locations(refused)) == [("body", "votes", "0", "organisation_id")]
    assert w.call("GET", f"{API}/{to_all}/decision", w.staff).json()["votes"] == ok.json()["votes"]


def stored_votes(engine: Engine, decision_id: int) -> dict[int, str]:
    with Session(engine) as session:
        rows = session.exec(select(DecisionVote).where(DecisionVote.decision_id == decision_id)).all()
    return {row.organisation_id: row.vote.value for row in rows}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_tally_equals_the_recorded_votes_and_recording_again_replaces_them(world, session, seed):
    """Random sets of votes from a dozen invited organisations, recorded three times before publishing: each
    time the tally, the listed votes and the stored rows are exactly the last set; after publishing, frozen."""
    w = world
    rng = random.Random(seed)
    organisations = [make_partner(session).id for _ in range(12)]
    cid = w.build.make("closed", organisations)
    path = f"{API}/{cid}/decision"
    decision_id = None
    for round_ in range(3):
        voters = rng.sample(organisations, rng.randint(0, len(organisations)))
        votes = {org: rng.choice(["for", "against", "abstain"]) for org in voters}
        decided_on = (date.today() - timedelta(days=round_)).isoformat()
        response = w.call("POST", path, w.staff, decision_body(votes, decided_on=decided_on))
        assert response.status_code == 201, response.text
        counted = Counter(votes.values())
        expected_tally = {v: counted.get(v, 0) for v in ("for", "against", "abstain")}
        for answer in (response.json(), w.call("GET", path, w.staff).json()):
            assert answer["tally"] == expected_tally
            assert {v["organisation_id"]: v["vote"] for v in answer["votes"]} == votes
            assert len(answer["votes"]) == len(votes) == sum(answer["tally"].values())
            assert answer["decided_on"] == decided_on
        decision_id = decision_id or response.json()["id"]
        assert response.json()["id"] == decision_id  # one decision, replaced
        assert stored_votes(w.engine, decision_id) == votes

    assert w.call("POST", f"{path}/publish", w.staff).status_code == 200
    last = stored_votes(w.engine, decision_id)
    assert w.refused("POST", path, w.staff, decision_body({organisations[0]: "against"})) == ""
    assert w.refused("POST", f"{path}/publish", w.staff) == ""
    assert stored_votes(w.engine, decision_id) == last


def test_a_consultation_closed_by_time_takes_its_decision_only_after_closing(world):
    """Past its closing time but not yet closed (the job has not run), a consultation is still open: no
    decision yet. Once closed, the decision is taken."""
    w = world
    cid = w.build.make("overdue", [w.org_a.id])
    assert w.refused("POST", f"{API}/{cid}/decision", w.staff, decision_body({w.org_a.id: "for"})) == ""
    assert w.call("POST", f"{API}/{cid}/close", w.staff).status_code == 200
    assert w.call("POST", f"{API}/{cid}/decision", w.staff, decision_body({w.org_a.id: "for"})).status_code == 201
