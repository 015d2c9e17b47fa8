"""Builders of public updates and fact-checks through the JSON API, in any state a test needs.

Everything goes through real HTTP requests to the app (`client`), as an officer would: an `Officers` pair
holds the bearer headers of an author and of a second officer who approves (four eyes). Each builder
returns the update (or rumour) as the API answers it, a dict with its `id`.

Their API tokens are issued by `service.auth.issue_token` (the same tokens the token endpoint hands out),
not through the password form: argon2 is slow on purpose, and these tests are not about logging in.
"""

import threading
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from service.auth import issue_token
from service.bulletins.http_cache import pages
from service.bulletins.models import Bulletin, BulletinRevision
from service.db import utcnow, write_engine
from service.users.models import User
from tests.factories import make_user

UPDATE = {
    "title": "Затворен мост над река Струма",
    "body": "Мостът при кв. „Изток“ е **затворен** до второ нареждане.\n\nИзползвайте обходния път.",
    "area_desc": "кв. „Изток“, Перник",
    "category": "alert",
    "urgency": "Immediate",
    "severity": "Severe",
    "certainty": "Observed",
    "cap_category": "Transport",
    "response_type": "Avoid",
}


def bearer(session: Session, user: User) -> dict[str, str]:
    """Authorization headers with a fresh API token of `user`."""
    return {"Authorization": f"Bearer {issue_token(session=session, user=user, kind='api')}"}


def staff(session: Session, *roles: str) -> dict[str, str]:
    """Authorization headers of a new user with `roles` (e.g. "coordinator" to declare an emergency)."""
    return bearer(session, make_user(session, *roles))


class Officers:
    """Two communications officers: `author` writes, `approver` (another person) approves."""

    def __init__(self, client: TestClient, session: Session) -> None:
        self.client = client
        self.author = staff(session, "communications")
        self.approver = staff(session, "communications")

    def _ok(self, method: str, url: str, headers: dict[str, str], status: int = 200, **kwargs: Any) -> dict:
        response = self.client.request(method, url, headers=headers, **kwargs)
        assert response.status_code == status, f"{method} {url}: {response.status_code} {response.text}"
        return response.json()

    def draft(self, **fields: Any) -> dict:
        """A draft by the author, with `UPDATE`'s fields overridden by `fields`."""
        return self._ok("POST", "/api/v1/bulletins", self.author, 201, json={**UPDATE, **fields})

    def in_review(self, **fields: Any) -> dict:
        draft = self.draft(**fields)
        return self._ok("POST", f"/api/v1/bulletins/{draft['id']}/submit", self.author)

    def published(self, **fields: Any) -> dict:
        """Written, submitted and approved now by the second officer."""
        update = self._ok("POST", f"/api/v1/bulletins/{self.in_review(**fields)['id']}/approve", self.approver)
        assert update["status"] == "published", update
        return update

    def scheduled(self, hours: float = 24, **fields: Any) -> dict:
        """Approved for publication `hours` from now."""
        at = (utcnow() + timedelta(hours=hours)).isoformat()
        bid = self.in_review(**fields)["id"]
        update = self._ok("POST", f"/api/v1/bulletins/{bid}/approve", self.approver, json={"publish_at": at})
        assert update["status"] == "scheduled", update
        return update

    def correct(self, bulletin_id: int, body: str, reason: str = "Уточнен е срокът.", **fields: Any) -> dict:
        """A correction (a new revision) of a published update."""
        data = {"body": body, "reason": reason, **fields}
        return self._ok("POST", f"/api/v1/bulletins/{bulletin_id}/corrections", self.author, 201, json=data)

    def retract(self, bulletin_id: int, reason: str = "Съобщението е публикувано по грешка.") -> dict:
        return self._ok("POST", f"/api/v1/bulletins/{bulletin_id}/retract", self.author, json={"reason": reason})

    def fact_check(
        self, *, wording: str = "Водата от чешмата в целия град е отровена.", verdict: str = "false",
        response: str = "Водата е **годна за пиене**: пробите на РЗИ от днес са чисти.",
        evidence: str = "Протокол на РЗИ от днес.", url: str | None = "https://social.example/post/1",
        language: str = "bg", **rumour: Any,
    ) -> tuple[dict, dict]:  # fmt: skip
        """A rumour logged, its verdict recorded, and the fact-check answering it published: (rumour, update)."""
        logged = self._ok(
            "POST", "/api/v1/rumours", self.author, 201,
            json={"wording": wording, "channel": "Фейсбук група", "url": url, "language": language, **rumour},
        )  # fmt: skip
        rid = logged["id"]
        self._ok(
            "POST", f"/api/v1/rumours/{rid}/verdict", self.author,
            json={"verdict": verdict, "evidence": evidence, "response": response},
        )  # fmt: skip
        draft = self._ok("POST", f"/api/v1/rumours/{rid}/fact-check", self.author, 201)
        self._ok("POST", f"/api/v1/bulletins/{draft['id']}/submit", self.author)
        update = self._ok("POST", f"/api/v1/bulletins/{draft['id']}/approve", self.approver)
        return self._ok("GET", f"/api/v1/rumours/{rid}", self.author), update

    def get(self, bulletin_id: int) -> dict:
        return self._ok("GET", f"/api/v1/bulletins/{bulletin_id}", self.author)


def backdate(engine: Engine, bulletin_id: int, hours: float = 1) -> None:
    """Moves an update's publication, corrections and revisions `hours` into the past, as if time had
    passed (times public surfaces show have whole seconds); forgets this process's rendered copies."""
    with Session(write_engine(engine)) as session:
        bulletin = session.get(Bulletin, bulletin_id)
        for name in ("approved_at", "published_at", "corrected_at", "retracted_at"):
            value: datetime | None = getattr(bulletin, name)
            if value is not None:
                setattr(bulletin, name, value - timedelta(hours=hours))
        session.add(bulletin)
        for revision in session.exec(select(BulletinRevision).where(BulletinRevision.bulletin_id == bulletin_id)):
            revision.created_at -= timedelta(hours=hours)
            session.add(revision)
        session.commit()
    pages.clear()


def settle_mirror() -> None:
    """Waits for the app's start-up rebuild of the static mirror (a background thread) to finish."""
    for thread in threading.enumerate():
        if thread.name == "public-mirror":
            thread.join(30)
