"""The rumour log and its fact-checks, through the JSON API and the public pages.

A rumour is logged (new), put under investigation, resolved by a verdict (which may be revised, never by a
plain PATCH), and answered by a fact-check: a draft public update in the rumour's language whose body is
the approved response. It is reviewed like any other update and, once published, appears on
`/fact-checks`. A rumour has one live answer at a time: a second fact-check waits for the first to be
retracted (or its draft deleted). The log lists what is unresolved and riskiest first.
"""

import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from service.config import settings
from service.i18n import gettext_in
from tests.bulletins.state import VERDICT, Newsroom, audit_actions, changes, iso, public_state, rumour_body
from tests.factories import api_headers, make_user

B, R = "/api/v1/bulletins", "/api/v1/rumours"
WORDING = "Водата от чешмите е отровена, не пийте!"


@pytest.fixture
def desk(client, session, engine):
    author = make_user(session, "communications")
    reviewer = make_user(session, "communications")

    class Desk:
        news = Newsroom(engine, author, reviewer)
        writer = api_headers(client, author)
        checker = api_headers(client, reviewer)

        def __init__(self) -> None:
            self.client, self.engine, self.author = client, engine, author

        def call(self, method: str, path: str, body: Any = None, status: int = 200, headers: dict | None = None):
            response = client.request(method, path, json=body, headers=headers or self.writer)
            assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text}"
            return response.json() if response.content else None

        def refused(self, method: str, path: str, body: Any = None, status: int = 409) -> str:
            """The route refuses with `status` and a message, and nothing changed."""
            before = public_state(engine)
            response = client.request(method, path, json=body, headers=self.writer)
            assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text}"
            assert changes(before, public_state(engine)) == []
            return response.json()["detail"]

        def publish(self, bulletin_id: int) -> None:
            self.call("POST", f"{B}/{bulletin_id}/submit")
            self.call("POST", f"{B}/{bulletin_id}/approve", headers=self.checker)

    return Desk()


def claim_reviews(page: str) -> list[dict]:
    """The schema.org ClaimReview objects in a page's JSON-LD."""
    found = []
    for block in re.findall(r'<script type="application/ld\+json">(.*?)</script>', page, re.S):
        data = json.loads(block)
        found += [d for d in (data if isinstance(data, list) else [data]) if d.get("@type") == "ClaimReview"]
    return found


def test_a_rumour_is_investigated_resolved_and_answered_by_a_published_fact_check(desk, client):
    d = desk
    rumour = d.call("POST", R, rumour_body(wording=WORDING, first_seen=iso(-7200)), status=201)
    rid = rumour["id"]
    assert (rumour["status"], rumour["verdict"], rumour["bulletin_id"]) == ("new", None, None)
    assert d.refused("POST", f"{R}/{rid}/fact-check")  # no verdict yet

    assert d.call("PATCH", f"{R}/{rid}", {"status": "investigating", "report_count": 12})["status"] == "investigating"
    assert d.refused("PATCH", f"{R}/{rid}", {"status": "resolved"})
    assert d.refused("PATCH", f"{R}/{rid}", {"status": "new"})

    resolved = d.call("POST", f"{R}/{rid}/verdict", VERDICT)
    assert (resolved["status"], resolved["verdict"], resolved["response"]) == ("resolved", "false", VERDICT["response"])
    assert resolved["evidence"] == VERDICT["evidence"] and resolved["verdict_at"]
    assert resolved["report_count"] == 12

    draft = d.call("POST", f"{R}/{rid}/fact-check", status=201)
    title = gettext_in("bg")("Fact check: {claim}").format(claim=rumour_body()["summary"])
    assert (draft["status"], draft["language"], draft["body"], draft["title"]) == (
        "draft", "bg", VERDICT["response"], title,
    )  # fmt: skip
    assert draft["category"] == "correction" and draft["area_desc"] == settings.municipality_name
    assert draft["created_by_id"] == d.author.id
    assert d.call("GET", f"{R}/{rid}")["bulletin_id"] == draft["id"]
    assert audit_actions(d.engine, rid, "rumour") == [
        "rumour.create",
        "rumour.update",
        "rumour.verdict",
        "rumour.update",
    ]

    # Not public until a second officer approves it.
    assert WORDING not in client.get("/fact-checks").text
    assert client.get(f"/updates/{draft['id']}").status_code == 404
    assert d.refused("POST", f"{R}/{rid}/fact-check")  # one answer at a time
    d.publish(draft["id"])
    assert d.refused("POST", f"{R}/{rid}/fact-check")

    page = client.get("/fact-checks").text
    assert WORDING in page and f"/updates/{draft['id']}" in page
    [review] = claim_reviews(page)
    assert review["claimReviewed"] == WORDING and review["url"].endswith(f"/updates/{draft['id']}")
    assert review["reviewRating"]["alternateName"] == gettext_in("bg")("False")
    assert review["author"]["name"] == settings.municipality_name and review["datePublished"]
    assert WORDING in client.get(f"/updates/{draft['id']}").text
    assert WORDING not in client.get("/fact-checks?lang=en").text  # a Bulgarian fact-check

    # Retracted, it leaves the page, and the rumour may be answered again.
    d.call("POST", f"{B}/{draft['id']}/retract", {"reason": "Отговорът е непълен"}, headers=d.checker)
    assert WORDING not in client.get("/fact-checks").text
    second = d.call("POST", f"{R}/{rid}/fact-check", status=201)
    assert second["id"] != draft["id"] and d.call("GET", f"{R}/{rid}")["bulletin_id"] == second["id"]


def test_an_english_rumour_gets_an_english_fact_check(desk, client):
    d = desk
    rid = d.news.rumour("resolved", language="en", wording="The dam has burst!", summary="Dam burst claim")

    draft = d.call("POST", f"{R}/{rid}/fact-check", status=201)

    assert (draft["language"], draft["title"]) == ("en", "Fact check: Dam burst claim")
    assert draft["area_desc"] == settings.municipality_name_en
    d.publish(draft["id"])
    assert "The dam has burst!" in client.get("/fact-checks?lang=en").text
    assert "The dam has burst!" not in client.get("/fact-checks").text


def test_a_deleted_fact_check_draft_frees_the_rumour(desk):
    d = desk
    rid = d.news.rumour("resolved")
    first = d.call("POST", f"{R}/{rid}/fact-check", status=201)

    d.call("DELETE", f"{B}/{first['id']}", status=204)

    assert d.call("GET", f"{R}/{rid}")["bulletin_id"] is None
    second = d.call("POST", f"{R}/{rid}/fact-check", status=201)
    assert second["status"] == "draft" and d.call("GET", f"{R}/{rid}")["bulletin_id"] == second["id"]
    assert d.call("GET", B)["total"] == 1


@pytest.mark.parametrize("state", ["in_review", "scheduled"])
def test_no_second_fact_check_while_the_first_waits_for_review_or_its_time(desk, state):
    d = desk
    rid = d.news.rumour("resolved")
    bid = d.call("POST", f"{R}/{rid}/fact-check", status=201)["id"]
    d.call("POST", f"{B}/{bid}/submit")
    if state == "scheduled":
        d.call("POST", f"{B}/{bid}/approve", {"publish_at": iso(3600)}, headers=d.checker)

    detail = d.refused("POST", f"{R}/{rid}/fact-check")

    assert str(bid) in detail  # names the update that answers it


def test_a_verdict_can_be_revised(desk):
    d = desk
    rid = d.news.rumour("resolved")
    revised = {
        "verdict": "misleading",
        "evidence": "Една проба от кв. „Изток“ е над нормата за хлор.",
        "response": "Водата е годна за пиене, освен в кв. „Изток“ до второ нареждане.",
    }

    got = d.call("POST", f"{R}/{rid}/verdict", revised)

    assert (got["status"], got["verdict"], got["evidence"], got["response"]) == ("resolved", *revised.values())
    assert audit_actions(d.engine, rid, "rumour")[-2:] == ["rumour.verdict", "rumour.verdict"]
    # A resolved rumour stays resolved: no PATCH reopens it.
    assert d.refused("PATCH", f"{R}/{rid}", {"status": "investigating"})
    assert d.refused("PATCH", f"{R}/{rid}", {"status": "new"})
    # What is known of it may still change.
    assert d.call("PATCH", f"{R}/{rid}", {"report_count": 40, "last_seen": iso(0)})["report_count"] == 40


def test_a_verdict_may_name_an_existing_update_as_its_answer(desk):
    d = desk
    rid = d.news.rumour("investigating")
    bid = d.news.bulletin("draft")

    got = d.call("POST", f"{R}/{rid}/verdict", {**VERDICT, "bulletin_id": bid})

    assert got["bulletin_id"] == bid
    assert d.refused("POST", f"{R}/{rid}/fact-check")


def test_the_log_lists_unresolved_and_riskiest_first(desk):
    d = desk
    news = d.news
    resolved_high = news.rumour("resolved", risk="high", last_seen=iso(0))
    new_low = news.rumour("new", risk="low", last_seen=iso(-60))
    investigating_high_older = news.rumour("investigating", risk="high", last_seen=iso(-3600), first_seen=iso(-7200))
    new_high = news.rumour("new", risk="high", last_seen=iso(-120))
    new_medium = news.rumour("new", risk="medium", last_seen=iso(-86_400), first_seen=iso(-90_000))
    resolved_low = news.rumour("resolved", risk="low")

    log = d.call("GET", R)

    assert [r["id"] for r in log["items"]] == [
        new_high, investigating_high_older, new_medium, new_low, resolved_high, resolved_low,
    ]  # fmt: skip
    assert log["total"] == 6
    assert [r["id"] for r in d.call("GET", f"{R}?status=new")["items"]] == [new_high, new_medium, new_low]
    assert [r["id"] for r in d.call("GET", f"{R}?status=resolved")["items"]] == [resolved_high, resolved_low]
    page = d.call("GET", f"{R}?limit=2&offset=2")
    assert [r["id"] for r in page["items"]] == [new_medium, new_low] and page["total"] == 6


def test_a_rumour_logged_with_only_its_last_sighting_was_first_seen_then(desk):
    """Without `first_seen`, it is the last sighting when that lies in the past (not "now", after it)."""
    d = desk
    seen = iso(-3600)

    got = d.call("POST", R, rumour_body(last_seen=seen), status=201)

    assert got["first_seen"] == got["last_seen"]
    assert abs(datetime.fromisoformat(got["last_seen"]) - datetime.fromisoformat(seen)) < timedelta(seconds=1)
