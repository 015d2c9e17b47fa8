"""Malformed, out-of-range and hostile input to the consultations API.

A refusal is a clear 4xx that names the field (`detail[].loc` on 422) and changes nothing: no row, no queued
e-mail, no audit entry. Hostile text that is otherwise valid is kept exactly as typed.
"""

from typing import Any

import pytest
from sqlmodel import Session, func, select

from service.consultations.models import Consultation, Submission
from service.partners.models import Organisation
from tests.consultations.state import (
    API,
    Consultations,
    changes,
    consultation_body,
    consultations_state,
    decision_body,
    iso,
)
from tests.emergencies.build import Logistics
from tests.factories import api_headers, make_partner, make_user

SCRIPT = "<script>alert('x')</script>"
IMG = '"><img src=x onerror=alert(1)>'
SQL = "Robert'); DROP TABLE consultation; --"
NAIVE = "2099-01-01T10:00:00"  # no offset: which time zone would it be?
BAD_TIMES = [
    NAIVE, "2099-01-01", "tomorrow", "", "2099-02-30T10:00:00Z", "2099-01-01T25:00:00Z", "25.11.2099 14:30",
    "0001-01-01T00:00:00+05:00",  # before the first moment UTC can hold
    "9999-12-31T23:59:59-05:00",  # after the last
    None, [], {"at": "2099-01-01T10:00:00Z"}, True,
]  # fmt: skip
BAD_IDS = [0, -1, 2**31, 10**30, "alfa", 1.5, None, [1], {"id": 1}]


def error_at(response: Any, *loc: Any) -> str | None:
    """The message an API 422 gives at `loc` (or below it: `invited_ids` covers `invited_ids.0`), or None."""
    detail = response.json().get("detail")
    if isinstance(detail, list):
        for item in detail:
            if tuple(str(part) for part in item.get("loc", ()))[: len(loc)] == tuple(str(part) for part in loc):
                return item.get("msg") or "(no message)"
    return None


@pytest.fixture
def api(client, session, engine):
    coordinator = make_user(session, "coordinator")
    org = make_partner(session, name="Сдружение „Алфа“")
    partner = make_user(session, "partner", organisation=org)
    build = Consultations(engine, coordinator)
    emergency = Logistics(engine, coordinator).emergency()

    class Api:
        staff = api_headers(client, coordinator)
        rep = api_headers(client, partner)

        def __init__(self) -> None:
            self.build, self.org, self.engine, self.emergency = build, org, engine, emergency
            self.rep_user = partner
            self.problems: list[str] = []

        def refuses(self, method: str, path: str, body: Any, headers: dict, status: int, *loc: Any) -> None:
            """Expects `status` (naming `loc` on 422) and nothing changed; notes what went otherwise."""
            before = consultations_state(engine)
            response = client.request(method, path, json=body, headers=headers)
            where = f"{method} {path} {str(body)[:140]}"
            if response.status_code != status:
                self.problems.append(f"{where}: expected {status}, got {response.status_code} {response.text[:200]}")
            elif loc and not error_at(response, *loc):
                self.problems.append(f"{where}: the error does not name {loc}: {response.text[:200]}")
            elif not response.json().get("detail"):
                self.problems.append(f"{where}: a refusal that says nothing")
            if changed := changes(before, consultations_state(engine)):
                self.problems.append(f"{where}: refused, yet changed {changed[:2]}")

        def check(self) -> None:
            assert not self.problems, "\n".join(self.problems)

    return Api()


def test_bad_consultations(api):
    body = consultation_body([api.org.id], emergency_id=api.emergency)
    for name, value in [("opens_at", t) for t in BAD_TIMES] + [("closes_at", t) for t in BAD_TIMES]:
        api.refuses("POST", API, {**body, name: value}, api.staff, 422, "body", name)
    for bad in BAD_IDS:
        api.refuses("POST", API, {**body, "invited_ids": [api.org.id, bad]}, api.staff, 422, "body", "invited_ids")
        if bad is not None:  # none is "no emergency", which is allowed
            api.refuses("POST", API, {**body, "emergency_id": bad}, api.staff, 422, "body", "emergency_id")
    for changed, field in [
        ({"closes_at": body["opens_at"]}, "closes_at"),  # closes as it opens
        ({"opens_at": iso(60), "closes_at": iso(30)}, "closes_at"),  # closes before it opens
        ({"emergency_id": 999_999}, "emergency_id"),
        ({"invited_ids": [api.org.id, 999_999]}, "invited_ids"),
        ({"invited_ids": [api.org.id] * 1001}, "invited_ids"),
        ({"invited_ids": str(api.org.id)}, "invited_ids"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "ab"}, "title"),
        ({"title": "я" * 201}, "title"),
        ({"title": 12345}, "title"),
        ({"title": ["План"]}, "title"),
        ({"title": None}, "title"),
        ({"question": "  ?  "}, "question"),
        ({"question": "я" * 20_001}, "question"),
        ({"measures": {"1": "Помощ"}}, "measures"),
        ({"open_to_all": "perhaps"}, "open_to_all"),
        ({"open_to_all": 2}, "open_to_all"),
        ({"status": "open"}, "status"),  # the status moves by actions only
        ({"accepting": True}, "accepting"),
        ({"id": 7}, "id"),
        ({"created_by_id": 1}, "created_by_id"),
    ]:
        api.refuses("POST", API, {**body, **changed}, api.staff, 422, "body", field)
    for missing in ("title", "question", "measures", "opens_at", "closes_at"):
        api.refuses("POST", API, {k: v for k, v in body.items() if k != missing}, api.staff, 422, "body", missing)
    api.refuses("POST", API, [body], api.staff, 422, "body")
    api.refuses("POST", API, "title=План", api.staff, 422, "body")
    api.refuses("GET", f"{API}?status=maybe", None, api.staff, 422, "query", "status")
    api.refuses("GET", f"{API}?limit=0", None, api.staff, 422, "query", "limit")
    api.refuses("GET", f"{API}?offset=-1", None, api.staff, 422, "query", "offset")
    for bad in ("0", "-3", "abc", str(2**31), "1.5"):
        api.refuses("GET", f"{API}/{bad}", None, api.staff, 422, "path", "consultation_id")
        api.refuses("POST", f"{API}/{bad}/open", None, api.staff, 422, "path", "consultation_id")
    for method, suffix in [("GET", ""), ("PATCH", ""), ("POST", "/open"), ("POST", "/close"), ("GET", "/decision")]:
        api.refuses(method, f"{API}/999999{suffix}", {} if method == "PATCH" else None, api.staff, 404)
    api.check()


def test_bad_changes_to_a_draft(api):
    cid = api.build.make("draft", [api.org.id])
    path = f"{API}/{cid}"
    for body, field in [
        ({"closes_at": api.build.get(cid).opens_at.isoformat()}, "closes_at"),
        ({"opens_at": iso(60 * 24 * 365)}, "closes_at"),  # now after the closing time it keeps
        ({"closes_at": NAIVE}, "closes_at"),
        ({"opens_at": "next week"}, "opens_at"),
        ({"title": None}, "title"),  # a field may be left out, not emptied
        ({"question": None}, "question"),
        ({"opens_at": None}, "opens_at"),
        ({"invited_ids": None}, "invited_ids"),
        ({"open_to_all": None}, "open_to_all"),
        ({"title": "я" * 201}, "title"),
        ({"emergency_id": 999_999}, "emergency_id"),
        ({"emergency_id": 0}, "emergency_id"),
        ({"invited_ids": [999_999]}, "invited_ids"),
        ({"invited_ids": [0]}, "invited_ids"),
        ({"status": "open"}, "status"),
        ({"opened_at": iso()}, "opened_at"),
    ]:
        api.refuses("PATCH", path, body, api.staff, 422, "body", field)
    api.refuses("PATCH", path, ["title"], api.staff, 422, "body")
    api.check()
    assert api.build.get(cid).title == consultation_body([])["title"]


def test_bad_submissions(api):
    cid = api.build.make("open", [api.org.id])
    path = f"{API}/{cid}/submissions"
    for body, field in [
        ({}, "position"),
        ({"position": "maybe"}, "position"),
        ({"position": "SUPPORT"}, "position"),
        ({"position": None}, "position"),
        ({"position": 1}, "position"),
        ({"position": "support", "comments": "я" * 20_001}, "comments"),
        ({"position": "support", "comments": ["да"]}, "comments"),
        ({"position": "support", "public": "perhaps"}, "public"),
        ({"position": "support", "public": None}, "public"),
        ({"position": "support", "organisation_id": api.org.id}, "organisation_id"),
        ({"position": "support", "revision": 5}, "revision"),
        ({"position": "support", "attachment_sha256": "0" * 64}, "attachment_sha256"),
    ]:
        api.refuses("POST", path, body, api.rep, 422, "body", field)
    api.refuses("POST", path, [{"position": "support"}], api.rep, 422, "body")
    api.refuses("POST", f"{API}/999999/submissions", {"position": "support"}, api.rep, 404)
    for bad in ("0", "x"):
        api.refuses("POST", f"{API}/{bad}/submissions", {"position": "support"}, api.rep, 422, "path")
        api.refuses("GET", f"{path}/{bad}/attachment", None, api.rep, 422, "path", "submission_id")
    api.check()
    with Session(api.engine) as session:
        assert session.exec(select(func.count()).select_from(Submission)).one() == 0


def test_bad_decisions(api):
    cid = api.build.make("closed", [api.org.id])
    path = f"{API}/{cid}/decision"
    body = decision_body({api.org.id: "for"})
    vote = body["votes"][0]
    for changed, field in [
        ({"text": ""}, "text"),
        ({"text": "да"}, "text"),
        ({"text": "я" * 20_001}, "text"),
        ({"text": None}, "text"),
        ({"decided_on": "yesterday"}, "decided_on"),
        ({"decided_on": "2026-13-01"}, "decided_on"),
        ({"decided_on": "2026-02-30"}, "decided_on"),
        ({"decided_on": "2026-01-15T10:00:00Z"}, "decided_on"),  # a time, not a date
        ({"decided_on": None}, "decided_on"),
        ({"votes": {"1": "for"}}, "votes"),
        ({"votes": [{**vote, "vote": "yes"}]}, "votes"),
        ({"votes": [{**vote, "vote": None}]}, "votes"),
        ({"votes": [{"organisation_id": api.org.id}]}, "votes"),
        ({"votes": [{**vote, "organisation_id": 0}]}, "votes"),
        ({"votes": [{**vote, "organisation_id": "alfa"}]}, "votes"),
        ({"votes": [{**vote, "weight": 2}]}, "votes"),
        ({"votes": [vote] * 1001}, "votes"),
        ({"published_at": iso()}, "published_at"),
        ({"tally": {"for": 5}}, "tally"),
    ]:
        api.refuses("POST", path, {**body, **changed}, api.staff, 422, "body", field)
    api.refuses("POST", path, {k: v for k, v in body.items() if k != "text"}, api.staff, 422, "body", "text")
    api.refuses(
        "POST", path, {k: v for k, v in body.items() if k != "decided_on"}, api.staff, 422, "body", "decided_on"
    )
    api.refuses("POST", f"{API}/999999/decision", body, api.staff, 404)
    api.refuses("POST", f"{API}/999999/decision/publish", None, api.staff, 404)
    api.check()
    assert api.build.get(cid).status == "closed"


def test_hostile_text_is_stored_exactly_as_typed(api, client):
    hostile = {
        "title": f"{SCRIPT} {SQL}",
        "question": f"{IMG}\n{SQL}\n{{{{ 7*7 }}}}",
        "measures": f"[линк](javascript:alert(1)) {SCRIPT} ../../etc/passwd %00 \\x00",
    }
    created = client.post(API, json=consultation_body([api.org.id], **hostile), headers=api.staff)
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    for answer in (created.json(), client.get(f"{API}/{cid}", headers=api.staff).json()):
        assert {k: answer[k] for k in hostile} == hostile
    assert client.post(f"{API}/{cid}/open", headers=api.staff).status_code == 200
    comments = f"{SQL}\n{SCRIPT}\n' OR '1'='1"
    sent = client.post(f"{API}/{cid}/submissions", json={"position": "amend", "comments": comments}, headers=api.rep)
    assert sent.status_code == 201, sent.text
    assert client.get(f"{API}/{cid}/submissions", headers=api.rep).json()[0]["comments"] == comments
    assert client.get(f"{API}/{cid}", headers=api.rep).json()["title"] == hostile["title"]
    assert client.post(f"{API}/{cid}/close", headers=api.staff).status_code == 200
    text = f"Решение: {SCRIPT} {SQL}"
    decided = client.post(
        f"{API}/{cid}/decision", json=decision_body({api.org.id: "for"}, text=text), headers=api.staff
    )
    assert decided.status_code == 201 and decided.json()["text"] == text

    with Session(api.engine) as session:  # the tables are all still there, and hold the text as typed
        stored = session.get(Consultation, cid)
        assert (stored.title, stored.question) == (hostile["title"], hostile["question"])
        assert session.exec(select(func.count()).select_from(Organisation)).one() == 1


def test_a_consultation_that_cannot_be_opened_says_which_field_to_fix(api):
    nobody = api.build.make("draft", [])
    api.refuses("POST", f"{API}/{nobody}/open", None, api.staff, 422, "body", "invited_ids")
    passed = api.build.make("draft", [api.org.id], opens_at=iso(-120), closes_at=iso(-60))
    api.refuses("POST", f"{API}/{passed}/open", None, api.staff, 422, "body", "closes_at")
    api.check()
    assert {api.build.get(nobody).status, api.build.get(passed).status} == {"draft"}
