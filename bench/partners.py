"""The partner registry under load, against a bare `GET /healthz` on the same server in the same run.

Reads: registry search (`GET /api/v1/partners?q=…`) over 1,000 organisations. Writes: adding a contact,
which passes through the audit chain's lock like every change does. Prints each rate and its ratio to
the bare rate.
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlmodel import Session

from bench.common import fresh_database, load, report_target, server
from service.auth import hash_password
from service.db import create_db_engine, write_engine
from service.partners import service as partners
from service.partners.models import OrganisationCreate
from service.users.models import Role, User

CLIENTS = 16
SECONDS = 8.0


def seed(database_url: str) -> None:
    engine = create_db_engine(database_url)
    with Session(write_engine(engine)) as session:
        session.add(User(email="bench@example.test", full_name="Bench", roles=[Role.coordinator],
                         password_hash=hash_password("bench-password")))  # fmt: skip
        session.commit()
        for n in range(1000):
            partners.create(
                session=session,
                actor="bench",
                data=OrganisationCreate(name=f"Организация {n:04d}", kind="ngo", sectors=["food", "water"][n % 2 :]),
                allow_duplicate=True,
            )
    engine.dispose()


def run(backend: str) -> None:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(backend, Path(tmp)) as url:
        seed(url)
        with server(url) as base:
            import httpx

            token = httpx.post(
                f"{base}/api/v1/auth/token", data={"username": "bench@example.test", "password": "bench-password"}
            ).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            bare = load("GET /healthz", base, lambda c, i: c.get("/healthz"), clients=CLIENTS, seconds=SECONDS)
            search = load(
                "GET /api/v1/partners?q=", base, lambda c, i: c.get(f"/api/v1/partners?q={i:02d}&limit=20"),
                clients=CLIENTS, seconds=SECONDS, headers=headers,
            )  # fmt: skip
            write = load(
                "POST …/contacts (audited)", base,
                lambda c, i: c.post(f"/api/v1/partners/{i + 1}/contacts", json={"full_name": f"Контакт {i}"}),
                clients=CLIENTS, seconds=SECONDS, headers=headers,
            )  # fmt: skip
    print(f"\n[{backend}] {CLIENTS} clients, {SECONDS:.0f} s each")
    for result in (bare, search, write):
        ratio = result.rate / bare.rate if bare.rate else 0
        print(f"  {result.line()}  ratio to bare {ratio:.2f}")
        if result is not bare:
            report_target(f"partners ({backend})", f"{result.name} ÷ bare /healthz", f"{ratio:.2f}")


if __name__ == "__main__":
    for backend in sys.argv[1:] or ["sqlite", "postgresql"]:
        run(backend)
