"""Small builders of test data; each takes overrides for what a test cares about."""

import itertools
from functools import cache

from fastapi.testclient import TestClient
from sqlmodel import Session

from service.auth import hash_password
from service.partners import service as partners
from service.partners.models import Organisation, OrganisationCreate
from service.users.models import Role, User

PASSWORD = "test-password-1"
_numbers = itertools.count(1)


@cache
def password_hash() -> str:
    """One argon2 hash for every test user: hashing is slow on purpose."""
    return hash_password(PASSWORD)


def make_user(session: Session, *roles: Role | str, organisation: Organisation | None = None, **overrides) -> User:
    n = next(_numbers)
    user = User(
        email=overrides.pop("email", f"user{n}@example.test"),
        full_name=overrides.pop("full_name", f"Потребител {n}"),
        roles=[Role(r) for r in roles] or [Role.coordinator],
        organisation_id=organisation.id if organisation else None,
        password_hash=password_hash(),
        **overrides,
    )
    session.add(user)
    session.commit()
    return user


def make_partner(session: Session, actor: User | None = None, **overrides) -> Organisation:
    n = next(_numbers)
    fields = {"name": f"Сдружение „Тест {n} {'абвгдежзий'[n % 10]}{n * 7919}“", "kind": "ngo", **overrides}
    return partners.create(
        session=session, actor=actor or "test", data=OrganisationCreate(**fields), allow_duplicate=True
    )


def api_headers(client: TestClient, user: User) -> dict[str, str]:
    """A bearer token for `user`, from the real token endpoint."""
    response = client.post("/api/v1/auth/token", data={"username": user.email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def page_login(client: TestClient, user: User) -> str:
    """Logs `client` in through the login form; returns the CSRF token for later forms."""
    client.get("/login")
    token = client.cookies.get("accord_csrf")
    response = client.post(
        "/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return token
