"""Text the database cannot store (a NUL character, which PostgreSQL refuses in text) is a clear 422 that
changes nothing, in every domain, instead of a 500."""

from sqlmodel import select

from service.config import settings
from service.emergencies.models import Emergency
from service.i18n import gettext_in
from tests.factories import api_headers, make_user


def test_a_nul_character_is_refused_or_kept_never_a_server_error(client, session, database_url) -> None:
    headers = api_headers(client, make_user(session, "coordinator"))
    body = {"title": "Наводнение\x00", "kind": "flood", "area": "кв. Изток", "severity": "severe"}
    response = client.post("/api/v1/emergencies", json=body, headers=headers)
    if database_url.startswith("postgresql"):
        assert response.status_code == 422, response.text
        message = gettext_in(settings.default_language)("The request has characters or values that cannot be stored.")
        assert response.json()["detail"] == message
        assert session.exec(select(Emergency)).first() is None
    else:  # SQLite stores it as given
        assert response.status_code == 201, response.text
        assert session.get(Emergency, response.json()["id"]).title == "Наводнение\x00"
