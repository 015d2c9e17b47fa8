"""The partner registry through the JSON API, as a coordinator and as a partner user would use it."""

import csv
import io

from sqlmodel import select

from service.audit import verify_chain
from service.partners.models import Organisation
from tests.factories import api_headers, make_partner, make_user


def test_coordinator_registers_verifies_and_finds_an_organisation(client, session):
    coordinator = make_user(session, "coordinator")
    headers = api_headers(client, coordinator)
    body = {
        "name": "„Хлебозавод Примерно“ АД",
        "name_en": "Primerno Bakery",
        "kind": "business",
        "registration_number": "BG 175 074 752",
        "sectors": ["food", "transport"],
        "capabilities": "3 000 хляба на денонощие",
        "website": "https://bakery.example",
        "email": "Office@Bakery.example",
    }
    created = client.post("/api/v1/partners", json=body, headers=headers)
    assert created.status_code == 201, created.text
    org = created.json()
    assert org["registration_number"] == "175074752"
    assert org["verification_status"] == "pending"
    assert sorted(org["sectors"]) == ["food", "transport"]

    verified = client.post(f"/api/v1/partners/{org['id']}/verify", headers=headers)
    assert verified.status_code == 200
    assert verified.json()["verification_status"] == "verified"
    assert verified.json()["verified_by_id"] == coordinator.id

    make_partner(session, name="Сдружение „Друго“", sectors=["water"])
    for query, expected in [
        ("q=хлебозавод", 1),
        ("q=ХЛЕБОЗАВОД", 1),
        ("q=bakery", 1),
        ("q=175074", 1),
        ("sector=food", 1),
        ("sector=water", 1),
        ("kind=business", 1),
        ("verification_status=verified", 1),
        ("verification_status=pending", 1),
        ("kind=business&sector=water", 0),
    ]:
        found = client.get(f"/api/v1/partners?{query}", headers=headers).json()
        assert found["total"] == expected, query

    page = client.get("/api/v1/partners?limit=1&offset=1", headers=headers).json()
    assert page["total"] == 2 and len(page["items"]) == 1 and page["offset"] == 1


def test_same_eik_is_refused_and_a_near_identical_name_needs_confirmation(client, session):
    headers = api_headers(client, make_user(session, "coordinator"))
    first = make_partner(session, name="„Минерална вода Струма“ ЕООД", registration_number="113003225")

    same_eik = client.post(
        "/api/v1/partners",
        json={"name": "Друго име", "kind": "business", "registration_number": "113003225"},
        headers=headers,
    )
    assert same_eik.status_code == 409
    assert same_eik.json()["existing_id"] == first.id
    assert same_eik.json()["detail"][0]["loc"] == ["body", "registration_number"]

    near = {"name": "Минерална вода СТРУМА ООД", "kind": "business"}
    warned = client.post("/api/v1/partners", json=near, headers=headers)
    assert warned.status_code == 409
    assert warned.json()["possible_duplicates"] == [{"id": first.id, "name": first.name}]

    confirmed = client.post("/api/v1/partners?allow_duplicate=true", json=near, headers=headers)
    assert confirmed.status_code == 201
    assert len(session.exec(select(Organisation)).all()) == 2


def test_export_is_csv_with_every_organisation(client, session):
    headers = api_headers(client, make_user(session, "coordinator"))
    make_partner(session, name='=HYPERLINK("http://evil")', kind="other")
    make_partner(session, name="Читалище „Просвета“", sectors=["information", "shelter"])
    response = client.get("/api/v1/partners/export.csv", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert {row["name"] for row in rows} == {'\'=HYPERLINK("http://evil")', "Читалище „Просвета“"}
    assert next(r for r in rows if r["name"].startswith("Чит"))["sectors"] == "information;shelter"


def test_partner_user_edits_only_their_own_organisation(client, session):
    coordinator = make_user(session, "coordinator")
    own = make_partner(session)
    other = make_partner(session)
    created = client.post(
        f"/api/v1/partners/{own.id}/users",
        json={"email": "Rep@Own.example", "full_name": "Представител", "password": "a-long-password"},
        headers=api_headers(client, coordinator),
    )
    assert created.status_code == 201, created.text
    assert created.json()["roles"] == ["partner"] and created.json()["organisation_id"] == own.id

    token = client.post("/api/v1/auth/token", data={"username": "rep@own.example", "password": "a-long-password"})
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    assert client.get(f"/api/v1/partners/{own.id}", headers=headers).status_code == 200
    changed = client.patch(
        f"/api/v1/partners/{own.id}", json={"phone": "+359 2 123 456", "sectors": ["fuel"]}, headers=headers
    )
    assert changed.status_code == 200 and changed.json()["sectors"] == ["fuel"]
    assert client.patch(f"/api/v1/partners/{own.id}", json={"name": "Ново"}, headers=headers).status_code == 403
    contact = client.post(
        f"/api/v1/partners/{own.id}/contacts", json={"full_name": "Дежурен", "is_primary": True}, headers=headers
    )
    assert contact.status_code == 201

    assert client.get(f"/api/v1/partners/{other.id}", headers=headers).status_code == 404
    assert client.get(f"/api/v1/partners/{other.id}/contacts", headers=headers).status_code == 404
    assert client.patch(f"/api/v1/partners/{other.id}", json={"phone": "1"}, headers=headers).status_code == 404
    assert client.get("/api/v1/partners", headers=headers).status_code == 403
    assert client.post(f"/api/v1/partners/{own.id}/verify", headers=headers).status_code == 403

    session.expire_all()
    assert session.get(Organisation, other.id).phone is None
    assert verify_chain(session)[1] is None


def test_one_primary_contact(client, session):
    headers = api_headers(client, make_user(session, "coordinator"))
    org = make_partner(session)
    first = client.post(
        f"/api/v1/partners/{org.id}/contacts", json={"full_name": "Първи", "is_primary": True}, headers=headers
    ).json()
    second = client.post(
        f"/api/v1/partners/{org.id}/contacts", json={"full_name": "Втори", "is_primary": True}, headers=headers
    ).json()
    listed = client.get(f"/api/v1/partners/{org.id}/contacts", headers=headers).json()
    assert [(c["id"], c["is_primary"]) for c in listed] == [(second["id"], True), (first["id"], False)]
    assert client.delete(f"/api/v1/partners/{org.id}/contacts/{first['id']}", headers=headers).status_code == 204
    assert len(client.get(f"/api/v1/partners/{org.id}/contacts", headers=headers).json()) == 1
