"""Malformed, out-of-range and hostile input to the memoranda API.

A refusal is a 422 that names the field (`detail[].loc`), one entry per wrong variable, and changes nothing: no
row, no queued e-mail, no audit entry. Markup in a variable is accepted as text and printed as text.
"""

import hashlib
from io import BytesIO
from typing import Any

import pytest
from pypdf import PdfReader

from service.partners import service as partners
from tests.factories import make_partner
from tests.memoranda.build import create_body, variables
from tests.memoranda.world import World, changes, days, make_world, memoranda_state

SCRIPT = "<script>alert(1)</script>"
SQL = "Robert'); DROP TABLE memorandum; --"


def locs(response: Any) -> list[tuple]:
    detail = response.json().get("detail")
    return [tuple(item.get("loc", ())) for item in detail] if isinstance(detail, list) else []


class Refusals:
    """Collects what went otherwise than refused with 422 at the expected place, changing nothing."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.problems: list[str] = []

    def check(
        self, method: str, path: str, body: Any, *loc: Any, who: str = "coordinator", exact: bool = False
    ) -> None:
        """Expects 422 naming `loc` (only it, with `exact`) and nothing changed."""
        before = memoranda_state(self.w.engine)
        response = self.w.call(method, path, who, body)
        where = f"{method} {path} {str(body)[:150]}"
        if response.status_code != 422:
            self.problems.append(f"{where}: expected 422, got {response.status_code} {response.text[:200]}")
        elif exact and locs(response) != [loc]:
            self.problems.append(f"{where}: expected only {loc}, got {locs(response)}")
        elif loc not in locs(response):
            self.problems.append(f"{where}: the error does not name {loc}: {response.text[:300]}")
        if changed := changes(before, memoranda_state(self.w.engine)):
            self.problems.append(f"{where}: refused, yet changed {changed[:2]}")

    def assert_none(self) -> None:
        assert not self.problems, "\n".join(self.problems)


@pytest.fixture
def world(client, session, engine) -> World:
    return make_world(client, session, engine)


@pytest.fixture
def refusals(world) -> Refusals:
    return Refusals(world)


def test_each_wrong_variable_is_named_once(world):
    w = world
    good = variables()
    wrong = {
        "response_hours": "six",  # not a number
        "termination_notice_days": 0,  # below the declared minimum
        "cost_arrangement": "barter",  # not one of the options
        "place_of_signing": "гр. Примерно\nи другаде",  # a single line
        "loading_bays": "3",  # not a variable of this template
    }
    body = create_body([w.org_a], variables={**{k: v for k, v in good.items() if k != "delivery_points"}, **wrong})
    before = memoranda_state(w.engine)

    response = w.call("POST", "/memoranda", "coordinator", body)

    assert response.status_code == 422, response.text
    expected = {("body", "variables", name) for name in [*wrong, "delivery_points"]}
    assert sorted(locs(response)) == sorted(expected)  # one entry each, nothing else
    assert all(item["msg"] for item in response.json()["detail"])
    assert changes(before, memoranda_state(w.engine)) == []

    # The same checks on a draft's change.
    draft = w.build.draft([w.org_a])
    before = memoranda_state(w.engine)
    response = w.call("PATCH", f"/memoranda/{draft}", "coordinator", {"variables": {**good, "response_hours": 0}})
    assert response.status_code == 422, response.text
    assert locs(response) == [("body", "variables", "response_hours")]
    assert changes(before, memoranda_state(w.engine)) == []


def test_bad_dates_are_named(world, refusals):
    w = world
    for overrides, field in [
        ({"valid_from": days(30), "valid_until": days(29)}, "valid_until"),
        ({"signing_deadline": days(-1)}, "signing_deadline"),
        ({"signing_deadline": days(400), "valid_until": days(365)}, "signing_deadline"),
        ({"signing_deadline": "tomorrow"}, "signing_deadline"),
        ({"valid_from": "31.12.2026"}, "valid_from"),
        ({"valid_until": "2026-02-30"}, "valid_until"),
        ({"valid_until": None}, "valid_until"),
    ]:
        refusals.check("POST", "/memoranda", create_body([w.org_a], **overrides), "body", field, exact=True)

    draft = w.build.draft([w.org_a])
    refusals.check("PATCH", f"/memoranda/{draft}", {"valid_until": days(-5)}, "body", "valid_until", exact=True)
    refusals.check("PATCH", f"/memoranda/{draft}", {"signing_deadline": days(-1)}, "body", "signing_deadline")
    issued = w.build.issued([w.org_a])
    for deadline in (days(-1), days(366), None):
        refusals.check("PATCH", f"/memoranda/{issued}", {"signing_deadline": deadline}, "body", "signing_deadline")
    refusals.assert_none()


def test_templates_and_partners_must_exist_be_distinct_and_in_good_standing(world, refusals, session):
    w = world
    suspended = make_partner(session, name="„Спряна“ ООД", kind="business")
    partners.suspend(session=session, actor=w.users["coordinator"], org=suspended, reason="Нередовни документи")
    session.close()

    for overrides, field in [
        ({"template": "tea_party"}, ("template",)),
        ({"template": ""}, ("template",)),
        ({"partner_ids": [999999]}, ("partner_ids",)),
        ({"partner_ids": [w.org_a.id, w.org_a.id]}, ("partner_ids",)),
        ({"partner_ids": [w.org_a.id, suspended.id]}, ("partner_ids",)),
        ({"partner_ids": []}, ("partner_ids",)),
        ({"partner_ids": [0]}, ("partner_ids", 0)),
        ({"partner_ids": [2**31]}, ("partner_ids", 0)),
        ({"partner_ids": list(range(1, 23))}, ("partner_ids",)),
    ]:
        refusals.check("POST", "/memoranda", create_body([w.org_a], **overrides), "body", *field)
    message = w.call("POST", "/memoranda", "coordinator", create_body([suspended])).json()["detail"][0]["msg"]
    assert "„Спряна“ ООД" in message

    draft = w.build.draft([w.org_a])
    refusals.check("PATCH", f"/memoranda/{draft}", {"partner_ids": [w.org_b.id, 999999]}, "body", "partner_ids")
    refusals.check("PATCH", f"/memoranda/{draft}", {"partner_ids": [suspended.id]}, "body", "partner_ids")
    refusals.assert_none()


def test_wrong_types_and_unknown_fields_are_refused(world, refusals):
    w = world
    good = create_body([w.org_a])
    for change, loc in [
        ({"template": 5}, ("template",)),
        ({"language": "de"}, ("language",)),
        ({"partner_ids": str(w.org_a.id)}, ("partner_ids",)),
        ({"partner_ids": ["alpha"]}, ("partner_ids", 0)),
        ({"variables": ["place_of_signing"]}, ("variables",)),
        ({"sequential": "maybe"}, ("sequential",)),
        ({"status": "active"}, ("status",)),
        ({"sha256": "0" * 64}, ("sha256",)),
        ({"verification_code": "AAAAAAAAAAAAAAAA"}, ("verification_code",)),
        ({"supersedes_id": 1}, ("supersedes_id",)),
    ]:
        refusals.check("POST", "/memoranda", {**good, **change}, "body", *loc)
    for missing in ("template", "partner_ids", "signing_deadline", "valid_from", "valid_until"):
        refusals.check("POST", "/memoranda", {k: v for k, v in good.items() if k != missing}, "body", missing)
    refusals.check("POST", "/memoranda", [good], "body")

    draft = w.build.draft([w.org_a])
    refusals.check("PATCH", f"/memoranda/{draft}", {"template": "public_awareness"}, "body", "template")
    refusals.check("PATCH", f"/memoranda/{draft}", {"status": "issued"}, "body", "status")

    issued = w.build.issued([w.org_a])
    sign, decline = f"/memoranda/{issued}/signatures", f"/memoranda/{issued}/decline"
    signature = {"signer_name": "Ивана Петрова", "signer_title": "Председател"}
    for body, field in [
        ({"signer_title": "Председател"}, "signer_name"),
        ({**signature, "signer_name": "И"}, "signer_name"),
        ({**signature, "signer_name": "   "}, "signer_name"),
        ({**signature, "signer_title": "я" * 201}, "signer_title"),
        ({**signature, "organisation_id": "alpha"}, "organisation_id"),
        ({**signature, "organisation_id": 0}, "organisation_id"),
        ({**signature, "method": "upload"}, "method"),
        ({**signature, "signed_at": "2026-01-01T00:00:00Z"}, "signed_at"),
    ]:
        refusals.check("POST", sign, body, "body", field, who="partner A")
    for body, field in [
        ({}, "reason"),
        ({"reason": "no"}, "reason"),
        ({"reason": "я" * 501}, "reason"),
        ({"reason": "Нямаме капацитет", "status": "declined"}, "status"),
    ]:
        refusals.check("POST", decline, body, "body", field, who="partner A")
        refusals.check("POST", f"/memoranda/{issued}/cancel", body, "body", field)
    for path in ("/memoranda/0", "/memoranda/alpha", f"/memoranda/{2**31}"):
        refusals.check("GET", path, None, "path", "memorandum_id")
        refusals.check("POST", f"{path}/issue", None, "path", "memorandum_id")
    for query, field in [
        ("status=bogus", "status"),
        ("limit=-1", "limit"),
        ("expiring_before=soon", "expiring_before"),
    ]:
        refusals.check("GET", f"/memoranda?{query}", None, "query", field)
    refusals.assert_none()


def test_a_scan_must_be_a_pdf(world):
    w = world
    issued = w.build.issued([w.org_a])
    form = {"signer_name": "Ивана Петрова", "signer_title": "Председател", "organisation_id": str(w.org_a.id)}
    problems = []
    for files, data, field in [
        ({"scan": ("scan.png", b"\x89PNG\r\n\x1a\n not a pdf", "image/png")}, form, "scan"),
        ({"scan": ("scan.pdf", b"", "application/pdf")}, form, "scan"),
        (None, form, "scan"),
        ({"scan": ("scan.pdf", b"%PDF-1.7\n", "application/pdf")}, {**form, "signer_name": "И"}, "signer_name"),
        ({"scan": ("scan.pdf", b"%PDF-1.7\n", "application/pdf")}, {**form, "signer_name": "    "}, "signer_name"),
        ({"scan": ("scan.pdf", b"%PDF-1.7\n", "application/pdf")}, {**form, "signer_title": " x "}, "signer_title"),
        ({"scan": ("scan.pdf", b"%PDF-1.7\n", "application/pdf")}, {**form, "organisation_id": "x"}, "organisation_id"),
    ]:
        before = memoranda_state(w.engine)
        response = w.client.post(
            f"/api/v1/memoranda/{issued}/signatures/scan", data=data, files=files, headers=w.headers("coordinator")
        )
        if response.status_code != 422 or ("body", field) not in locs(response):
            problems.append(f"{field}: expected 422 naming it, got {response.status_code} {response.text[:200]}")
        if changed := changes(before, memoranda_state(w.engine)):
            problems.append(f"{field}: refused, yet changed {changed[:2]}")
    assert not problems, "\n".join(problems)


def test_markup_in_a_variable_is_kept_and_printed_as_text(world):
    w = world
    hostile = {**variables(), "transport_capacity": SCRIPT, "place_of_signing": SQL}
    created = w.call("POST", "/memoranda", "coordinator", create_body([w.org_a], variables=hostile))
    assert created.status_code == 201, created.text
    assert created.json()["variables"]["transport_capacity"] == SCRIPT
    path = f"/memoranda/{created.json()['id']}"

    issued = w.call("POST", f"{path}/issue", "coordinator")
    assert issued.status_code == 200, issued.text

    document = w.call("GET", f"{path}/pdf", "partner A").content
    assert hashlib.sha256(document).hexdigest() == issued.json()["sha256"]
    text = "".join(" ".join(page.extract_text() for page in PdfReader(BytesIO(document)).pages).split())
    assert SCRIPT in text
    assert SQL.replace(" ", "") in text
    assert w.call("GET", path, "partner A").json()["variables"]["place_of_signing"] == SQL
