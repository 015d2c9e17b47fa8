"""Four eyes beyond the author: whoever wrote any of an update's text does not approve it, and a published
fact-check's claim and verdict change only through review (retract, then answer anew)."""

from service.users.models import Role
from tests.bulletins.build import Officers, staff


def test_an_officer_who_edited_the_draft_cannot_approve_it(client, session) -> None:
    officers = Officers(client, session)
    editor = staff(session, "communications")
    draft = officers.draft()
    changed = client.patch(
        f"/api/v1/bulletins/{draft['id']}", json={"body": "Текст на втори служител."}, headers=editor
    )
    assert changed.status_code == 200, changed.text
    assert client.post(f"/api/v1/bulletins/{draft['id']}/submit", headers=editor).status_code == 200

    refused = client.post(f"/api/v1/bulletins/{draft['id']}/approve", headers=editor)
    assert refused.status_code == 403
    assert client.get(f"/api/v1/bulletins/{draft['id']}", headers=editor).json()["status"] == "in_review"
    # The one who neither wrote nor edited it approves.
    approved = client.post(f"/api/v1/bulletins/{draft['id']}/approve", headers=officers.approver)
    assert approved.status_code == 200 and approved.json()["status"] == "published"


def test_the_verdicts_author_does_not_approve_the_fact_check_that_carries_their_response(client, session) -> None:
    officers = Officers(client, session)
    rumour = client.post(
        "/api/v1/rumours", json={"wording": "Хлябът свършва утре.", "channel": "Viber"}, headers=officers.approver
    ).json()
    verdict = {"verdict": "false", "evidence": "Складовете са пълни.", "response": "Хляб има за седмици."}
    assert client.post(f"/api/v1/rumours/{rumour['id']}/verdict", json=verdict, headers=officers.approver).is_success
    draft = client.post(f"/api/v1/rumours/{rumour['id']}/fact-check", headers=officers.author).json()
    assert client.post(f"/api/v1/bulletins/{draft['id']}/submit", headers=officers.author).is_success
    assert client.post(f"/api/v1/bulletins/{draft['id']}/approve", headers=officers.approver).status_code == 403
    third = staff(session, Role.communications)
    assert client.post(f"/api/v1/bulletins/{draft['id']}/approve", headers=third).json()["status"] == "published"


def test_a_published_fact_checks_claim_and_verdict_stay_as_reviewed(client, session) -> None:
    officers = Officers(client, session)
    rumour, answer = officers.fact_check(wording="Мостът ще бъде взривен.")
    url = f"/api/v1/rumours/{rumour['id']}"
    revised = {"verdict": "true", "evidence": "Друго.", "response": "Вярно е."}
    assert client.post(f"{url}/verdict", json=revised, headers=officers.author).status_code == 409
    assert client.patch(url, json={"wording": "Друго твърдение."}, headers=officers.author).status_code == 409
    # What is not part of the published claim may still change: another sighting.
    assert client.patch(url, json={"report_count": 9}, headers=officers.author).json()["report_count"] == 9
    page = client.get("/fact-checks").text
    assert "Мостът ще бъде взривен." in page and "Вярно е." not in page

    officers.retract(answer["id"], reason="Преразглеждаме присъдата.")
    assert client.post(f"{url}/verdict", json=revised, headers=officers.author).json()["verdict"] == "true"
    assert "Мостът ще бъде взривен." not in client.get("/fact-checks").text
