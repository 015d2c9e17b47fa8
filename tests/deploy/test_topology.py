"""The production topology, run for real on loopback: nginx in front with `bench/nginx-app.conf` (the static
mirror first, the rest to the app), two `accord serve` processes that each run the scheduler, one PostgreSQL
and an SMTP server.

Through nginx only: partners race pledges at one need, and it takes exactly what fits; a coordinator issues a
memorandum, archived under its SHA-256; officers publish an update now and schedule another, and the public
pages come from the mirror. Jobs run once across the processes: the scheduled update is published once, each
e-mail is delivered once. Then the process holding the scheduler's leader lock is killed (SIGKILL): nginx goes
on answering through the other process, which takes the lock and runs the next publication and e-mail, once.
"""

import hashlib
import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlmodel import Session, select

from bench.public import NGINX_SITE, nginx
from service.audit import AuditEntry, verify_chain
from service.bulletins.models import Bulletin, BulletinStatus
from service.db import utcnow
from service.emergencies.coverage import pledged_total
from service.emergencies.models import Pledge, PledgeStatus
from service.memoranda.models import Memorandum, MemorandumStatus
from service.notifications.models import OutboxMessage, OutboxStatus
from service.partners.models import Organisation
from tests.bulletins.build import Officers, bearer
from tests.conftest import BACKENDS, PROJECT, free_port
from tests.deploy.harness import (
    NGINX_APP_SITE,
    AppProcess,
    app_site_config,
    delivered,
    launch,
    ready,
    scheduler_leaders,
    wait_until,
)
from tests.emergencies.test_race import race  # every call from its own thread, all released at once
from tests.factories import make_partner, make_user
from tests.memoranda.build import create_body
from tests.test_browser import in_database

pytestmark = pytest.mark.slow

NEEDED = 100
PLEDGES = 60  # quantities 1..7 in turn: about 240 offered against 100 needed
PARTNERS = 6
LOCK_SECONDS = 3  # the leader's lock is checked every second: a takeover within a few seconds
AHEAD = timedelta(seconds=5)  # how far ahead an update is scheduled
QUIET_SECONDS = 3  # the publishing and sending jobs run every second: after this, a repeat would have shown
NGINX_ETAG = re.compile(r'"[0-9a-f]+-[0-9a-f]+"')  # nginx's own (mtime-size): the answer came from a file


def site_body(text: str) -> str:
    """An nginx site from its first `map` on (the upstream and the header left out), without comment lines,
    and with the `location @app` block, which passes requests to the app, cut out."""
    lines = [line for line in text[text.index("\nmap ") :].splitlines() if not line.strip().startswith("#")]
    start = lines.index("    location @app {")
    end = lines.index("    }", start)
    return "\n".join(lines[:start] + lines[end + 1 :])


def test_the_production_configuration_serves_the_public_site_as_the_tested_one_does() -> None:
    """Only the upstream and the passing to it differ from `bench/nginx-public.conf`, which
    tests/bulletins/test_nginx_mirror.py proves serves the mirror's bytes and outlives the app."""
    production = NGINX_APP_SITE.read_text()
    assert site_body(production) == site_body(NGINX_SITE.read_text())
    assert "proxy_next_upstream error timeout;" in production
    assert "non_idempotent" not in production  # a POST that reached a process is never sent to another


def test_the_readme_shows_the_production_configuration_that_is_tested() -> None:
    assert NGINX_APP_SITE.read_text().strip() in (PROJECT / "README.md").read_text()


@dataclass
class Cast:
    coordinator: dict[str, str]
    partners: list[Organisation]
    reps: list[dict[str, str]]  # each partner's user's bearer headers
    emails: list[str]  # and e-mail address


def cast(session: Session) -> Cast:
    coordinator = make_user(session, "coordinator")
    partners = [make_partner(session) for _ in range(PARTNERS)]
    users = [make_user(session, "partner", organisation=org) for org in partners]
    return Cast(
        coordinator=bearer(session, coordinator),
        partners=partners,
        reps=[bearer(session, user) for user in users],
        emails=[user.email for user in users],
    )


def call(client: httpx.Client, method: str, path: str, headers: dict, status: int = 200, **kwargs) -> dict:
    response = client.request(method, path, headers=headers, **kwargs)
    assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text[:500]}"
    return response.json()


def publications(engine, bulletin_id: int) -> int:
    """How many times the scheduler published the update: its `bulletin.publish` audit entries."""
    with Session(engine) as session:
        return len(
            session.exec(
                select(AuditEntry.id).where(
                    AuditEntry.action == "bulletin.publish", AuditEntry.entity_id == bulletin_id
                )
            ).all()
        )


def outbox(engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)))


def from_mirror(proxy: httpx.Client, path: str) -> httpx.Response | None:
    """The answer to `path` if nginx served it from a mirror file, else None."""
    response = proxy.get(path, headers={"Accept-Encoding": "identity"})
    if response.status_code == 200 and NGINX_ETAG.fullmatch(response.headers.get("etag", "")):
        return response
    return None


def need_body(item: str, quantity: int) -> dict:
    return {"item_name": item, "sector": "shelter", "unit": "pcs", "quantity": quantity, "deliver_to": "Училище"}


def is_acceptance(row: OutboxMessage) -> bool:
    return (row.dedupe_key or "").startswith("pledge.accepted:")


def all_mail_sent(engine, collector) -> bool:
    rows = outbox(engine)
    return (
        bool(rows)
        and all(r.status == OutboxStatus.sent for r in rows)
        and set(delivered(collector)) >= {r.id for r in rows}
    )


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="several app processes need PostgreSQL")
@pytest.mark.parametrize("database_factory", ["postgresql"], indirect=True)
def test_nginx_two_app_processes_and_postgresql_survive_the_scheduler_leaders_death(
    nginx_installed, database_url, engine, public_mirror, smtp_server, tmp_path
) -> None:
    controller, collector = smtp_server
    archive = tmp_path / "memoranda"
    people = in_database(database_url, cast)
    port = free_port()
    env = {
        "ACCORD_RUN_SCHEDULER": "true",
        "ACCORD_SCHEDULER_LOCK_SECONDS": str(LOCK_SECONDS),
        "ACCORD_PUBLISH_CHECK_SECONDS": "1",
        "ACCORD_OUTBOX_INTERVAL_SECONDS": "1",
        "ACCORD_SMTP_HOST": controller.hostname,
        "ACCORD_SMTP_PORT": str(controller.port),
        "ACCORD_MEMORANDA_DIR": str(archive),
        "ACCORD_PDF_RENDER_WORKERS": "1",
        "ACCORD_BASE_URL": f"http://127.0.0.1:{port}",
        "ACCORD_LOG_FORMAT": "json",  # as production's log collector takes it; the access lines show who served
    }
    apps: list[AppProcess] = [launch(database_url, tmp_path / f"app-{n}.log", **env) for n in (1, 2)]
    try:
        ready(*apps)
        site = app_site_config(listen=f"127.0.0.1:{port}", mirror_dir=public_mirror, apps=[a.address for a in apps])
        with (
            nginx(tmp_path / "nginx", [site], [port]),
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as proxy,
        ):
            wait_until(lambda: scheduler_leaders(engine, apps) in ([apps[0]], [apps[1]]), 15, "a scheduler leader")
            staff = people.coordinator
            emergency = call(proxy, "POST", "/api/v1/emergencies", staff, 201, json={
                "title": "Наводнение по поречието на Струма", "kind": "flood", "area": "кв. „Изток“",
                "severity": "severe"})  # fmt: skip
            need, spare = (
                call(proxy, "POST", f"/api/v1/emergencies/{emergency['id']}/needs?open=true", staff, 201, json=body)[
                    "id"
                ]
                for body in (need_body("Одеяла", NEEDED), need_body("Палатки", 1000))
            )
            deliver_by = (utcnow() + timedelta(days=2)).isoformat()

            # Partners race 60 pledges at one need through nginx, which spreads them over both processes.
            asked = [1 + i % 7 for i in range(PLEDGES)]
            path = f"/api/v1/needs/{need}/pledges"
            answers = race(
                proxy.base_url,
                [("POST", path, people.reps[i % PARTNERS], {"quantity": q, "deliver_by": deliver_by})
                 for i, q in enumerate(asked)],
            )  # fmt: skip
            assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers if a.status_code >= 500]
            created = {a.json()["id"]: q for a, q in zip(answers, asked, strict=True) if a.status_code == 201}
            refused = [(a.json(), q) for a, q in zip(answers, asked, strict=True) if a.status_code == 409]
            with Session(engine) as session:
                in_db = {p.id: p for p in session.exec(select(Pledge).where(Pledge.need_id == need))}
                live = pledged_total(session=session, need_id=need)
            assert set(in_db) == set(created)  # every 201 is in the database, and nothing else
            assert all(in_db[i].quantity == q and in_db[i].status == PledgeStatus.offered for i, q in created.items())
            remaining = NEEDED - sum(created.values())
            assert live == sum(created.values()) <= NEEDED
            assert refused and all(remaining <= answer["remaining"] < q for answer, q in refused)
            assert remaining < min(q for _, q in refused)  # exactly what fitted was taken
            # An access line is written just after its answer is sent: the last ones may still be on their way.
            wait_until(lambda: sum(app.served("POST", path) for app in apps) == PLEDGES, 10, "access line per pledge")
            served = [app.served("POST", path) for app in apps]
            assert min(served) > 0, f"nginx did not spread the pledges: {served}"

            # The app sees the reader's address nginx passes on (X-Forwarded-For, trusted from loopback).
            assert proxy.get("/healthz", headers={"X-Forwarded-For": "203.0.113.7"}).text == "ok"
            forwarded = ("GET", "/healthz", 200, "203.0.113.7")
            wait_until(lambda: forwarded in [*apps[0].requests(), *apps[1].requests()], 10, "forwarded address logged")

            # A coordinator issues a memorandum: its PDF is in the archive under the SHA-256 it was issued with.
            draft = call(proxy, "POST", "/api/v1/memoranda", staff, 201, json=create_body(people.partners[:2]))
            issued = call(proxy, "POST", f"/api/v1/memoranda/{draft['id']}/issue", staff)
            assert issued["status"] == MemorandumStatus.issued and issued["sha256"]
            stored = archive / issued["sha256"][:2] / f"{issued['sha256']}.pdf"
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == issued["sha256"]
            pdf = proxy.get(f"/api/v1/memoranda/{draft['id']}/pdf?variant=issued", headers=staff)
            assert pdf.status_code == 200 and pdf.content == stored.read_bytes()
            assert proxy.get(f"/verify/{issued['sha256']}").status_code == 200

            # Officers publish one update now and schedule another (four eyes: the second officer approves).
            officers: Officers = in_database(database_url, lambda session: Officers(proxy, session))
            now = officers.published(title="Затворен мост над Струма")
            scheduled = officers.scheduled(hours=AHEAD.total_seconds() / 3600, title="Пункт за пясъчни чували")
            assert proxy.get(f"/updates/{scheduled['id']}").status_code == 404  # not public before its time
            # The coordinator accepts three pledges: each partner is told by e-mail (the outbox, then SMTP).
            accepted = sorted(created)[:3]
            for pledge_id in accepted:
                call(proxy, "POST", f"/api/v1/pledges/{pledge_id}/accept", staff, json={})

            wait_until(lambda: from_mirror(proxy, f"/updates/{scheduled['id']}"), 30, "scheduled update in the mirror")
            assert from_mirror(proxy, f"/updates/{now['id']}") is not None
            home = from_mirror(proxy, "/")
            assert home is not None and now["title"] in home.text and scheduled["title"] in home.text
            wait_until(lambda: all_mail_sent(engine, collector), 30, "delivery of every queued e-mail")
            time.sleep(QUIET_SECONDS)  # more runs of the publishing and sending jobs: none may repeat a thing
            assert publications(engine, scheduled["id"]) == 1
            rows = outbox(engine)
            assert delivered(collector) == Counter({row.id: 1 for row in rows})
            assert all(row.attempts == 1 for row in rows)
            told = {int(row.dedupe_key.split(":")[1]): row.to_address for row in rows if is_acceptance(row)}
            email_of = {org.id: email for org, email in zip(people.partners, people.emails, strict=True)}
            assert told == {pledge_id: email_of[in_db[pledge_id].organisation_id] for pledge_id in accepted}
            sent_before = len(collector.messages)

            # The process running the jobs dies without a word. nginx goes on answering through the other one.
            [leader] = scheduler_leaders(engine, apps)
            assert leader is not None
            [survivor] = [app for app in apps if app is not leader]
            checks_before = survivor.served("GET", "/healthz")
            leader.kill()
            statuses = [proxy.get("/healthz").status_code for _ in range(5)]
            statuses += [proxy.get(f"/api/v1/needs/{need}", headers=staff).status_code for _ in range(5)]
            late = proxy.post(f"/api/v1/needs/{spare}/pledges", headers=people.reps[0],
                              json={"quantity": 5, "deliver_by": deliver_by})  # fmt: skip
            statuses.append(late.status_code)
            assert statuses == [200] * 10 + [201], statuses
            # nginx tried the dead process, was refused, and passed the request on (`proxy_next_upstream`).
            refused_by_dead = "connect() failed (111: Connection refused) while connecting to upstream"
            error_log = (tmp_path / "nginx" / "error.log").read_text()
            assert refused_by_dead in error_log and f'upstream: "http://{leader.address}/' in error_log, error_log
            wait_until(lambda: survivor.served("GET", "/healthz") == checks_before + 5, 10, "the survivor's 5 checks")

            # The survivor takes the lock and runs the next scheduled publication and e-mail, once each.
            wait_until(lambda: scheduler_leaders(engine, apps) == [survivor], 4 * LOCK_SECONDS + 5, "takeover")
            second = officers.scheduled(hours=AHEAD.total_seconds() / 3600, title="Вода от цистерни на площада")
            call(proxy, "POST", f"/api/v1/pledges/{late.json()['id']}/accept", staff, json={})
            wait_until(lambda: from_mirror(proxy, f"/updates/{second['id']}"), 30, "the survivor's publication")
            wait_until(lambda: all_mail_sent(engine, collector), 30, "the survivor's e-mail")
            time.sleep(QUIET_SECONDS)
            assert publications(engine, second["id"]) == 1 and publications(engine, scheduled["id"]) == 1
            rows = outbox(engine)
            assert delivered(collector) == Counter({row.id: 1 for row in rows})
            # The one e-mail since the takeover is the acceptance of the pledge made after the kill.
            [(envelope, message)] = collector.messages[sent_before:]
            [row] = [
                row for row in rows if is_acceptance(row) and row.dedupe_key.split(":")[1] == str(late.json()["id"])
            ]
            assert envelope.rcpt_tos == [people.emails[0]] and f".outbox-{row.id}@" in message["Message-ID"]
            assert scheduler_leaders(engine, apps) == [survivor]
            home = from_mirror(proxy, "/")
            assert home is not None and second["title"] in home.text
            assert "Traceback" not in survivor.log_text(), survivor.log_text()[-3000:]
    finally:
        for app in apps:
            app.stop()

    with Session(engine) as session:
        checked, broken = verify_chain(session)
        assert broken is None, f"the audit chain breaks after {checked} rows at entry {broken.id}"
        for bulletin_id in (now["id"], scheduled["id"], second["id"]):
            assert session.get(Bulletin, bulletin_id).status == BulletinStatus.published
        assert session.get(Memorandum, draft["id"]).sha256 == issued["sha256"]
        assert pledged_total(session=session, need_id=need) <= Decimal(NEEDED)
