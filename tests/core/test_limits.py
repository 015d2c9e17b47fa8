"""The limits: a request body over the configured size refused with 413 (by its Content-Length before any of
it is read, or as it streams); logins and anonymous uploads limited per client address (429 with
Retry-After); bare lists capped at 500 items; and a database that does not answer in time answered 503 with
Retry-After, the request's transaction rolled back and the worker free for the next request.

Body sizes and rates do not depend on the database, so those tests run on SQLite only; each database's
timeouts are its own, so those tests run on the database they are about.
"""

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service import limits
from service.config import Settings, settings
from service.db import create_db_engine, utcnow, write_engine
from service.emergencies.models import Emergency, Need, NeedStatus, Pledge, PledgeStatus
from service.main import create_app
from service.memoranda import api as memoranda_api
from service.memoranda import public as verification
from service.partners.models import Contact
from service.users.models import User
from tests.bulletins.build import Officers, bearer
from tests.conftest import only, start_server, stop
from tests.consultations.build import Stakeholder, decided
from tests.emergencies.build import Logistics
from tests.factories import PASSWORD, make_partner, make_user

MB = 1024 * 1024
TOKEN = "/api/v1/auth/token"
BUSY = "The database is busy; please try again in a moment."
BOUNDARY = "limits-test-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
# Documentation addresses (RFC 5737), sent as X-Forwarded-For: uvicorn trusts it from loopback, as from nginx.
FIRST, SECOND, THIRD = "203.0.113.10", "198.51.100.20", "192.0.2.30"
# A tiny window so a test can wait it out; cheap hashing so a burst of logins fits well inside it.
RATES = {
    "ACCORD_LOGIN_RATE_LIMIT": "3",
    "ACCORD_PUBLIC_WRITE_RATE_LIMIT": "2",
    "ACCORD_RATE_LIMIT_WINDOW_SECONDS": "4",
    "ACCORD_ARGON2_TIME_COST": "1",
    "ACCORD_ARGON2_MEMORY_KIB": "1024",
}


def english(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=30, cookies={"accord_lang": "en"})


def token(client: httpx.Client, user: User) -> dict[str, str]:
    response = client.post(TOKEN, data={"username": user.email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def form_login(client: httpx.Client, email: str, password: str, address: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": address} if address else {}
    client.get("/login", headers=headers)  # the CSRF cookie
    form = {"email": email, "password": password, "csrf_token": client.cookies.get("accord_csrf")}
    return client.post("/login", data=form, headers=headers)


def streamed(data: bytes, piece: int = 64 * 1024) -> Iterator[bytes]:
    """`data` in pieces: httpx sends a generator chunked, with no Content-Length."""
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


def pdf_upload(size: int) -> bytes:
    """A multipart form for /verify with a `size`-byte file that starts like a PDF."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="scan.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n%PDF-1.4\n"
    )
    return head.encode() + b"0" * size + f"\r\n--{BOUNDARY}--\r\n".encode()


def emergencies_in(engine) -> int:
    with Session(engine) as s:
        return len(s.exec(select(Emergency)).all())


# --- request bodies -------------------------------------------------------------------------------------


def test_the_default_body_limit_is_comfortably_above_the_largest_upload():
    default = Settings.model_fields["max_body_mb"].default * MB
    attachment = Settings.model_fields["attachment_max_mb"].default * MB
    largest = max(verification.MAX_UPLOAD_BYTES, memoranda_api.MAX_SCAN_BYTES, attachment)
    assert default >= largest + 4 * MB  # the form's other fields and the multipart framing fit easily


@only("sqlite")
def test_a_body_limit_that_would_refuse_allowed_attachments_stops_the_app_from_starting(engine, monkeypatch):
    monkeypatch.setattr(settings, "max_body_mb", 8.0)
    monkeypatch.setattr(settings, "attachment_max_mb", 10.0)
    with pytest.raises(RuntimeError, match=r"ACCORD_MAX_BODY_MB \(8\) .* ACCORD_ATTACHMENT_MAX_MB \(10\)"):
        create_app(engine, run_scheduler=False)


@only("postgresql")
def test_postgresql_connections_probe_an_idle_way_to_the_server(database_url):
    """TCP keepalives on every connection: one whose way to the server vanished silently is found dead."""
    for url in (database_url, database_url + "?keepalives_idle=300"):
        engine = create_db_engine(url)
        try:
            with engine.connect() as conn:
                parameters = conn.connection.dbapi_connection.info.get_parameters()
        finally:
            engine.dispose()
        assert parameters["keepalives"] == "1"
        assert parameters["keepalives_idle"] == ("300" if "?" in url else "60")  # the URL's own value wins
        assert (parameters["keepalives_interval"], parameters["keepalives_count"]) == ("10", "3")


@only("postgresql")
def test_connections_the_database_ended_are_replaced_without_a_failed_request(database_url, engine, session):
    """The pool checks a connection as it hands it out, without a ping's round trip: after every backend of
    the app was terminated (as a restart or an administrator would), the next requests all succeed."""
    build = Logistics(engine, make_user(session, "coordinator"))
    org = make_partner(session)
    partner = make_user(session, "partner", organisation=org)
    need_id = build.need(build.emergency(), quantity=1000, unit="pcs")
    session.close()
    engine.dispose()
    pledge = {"quantity": 5, "deliver_by": (utcnow() + timedelta(days=1)).isoformat()}
    path = f"/api/v1/needs/{need_id}/pledges"
    server = start_server(database_url)
    admin = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    try:
        with english(server.url) as client:
            headers = token(client, partner)
            for _ in range(5):  # the pool holds a connection or more now
                assert client.post(path, json=pledge, headers=headers).status_code == 201
            ended = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()[0]
            assert ended >= 1
            time.sleep(0.3)  # the farewells have arrived
            began = time.monotonic()
            answers = [client.post(path, json=pledge, headers=headers).status_code]
            # At once: a dead connection is replaced without a back-off (psycopg_pool's would wait a second).
            assert time.monotonic() - began < 0.8
            answers += [client.post(path, json=pledge, headers=headers).status_code for _ in range(4)]
            answers += [client.get(f"/api/v1/needs/{need_id}", headers=headers).status_code for _ in range(3)]
            assert answers == [201] * 5 + [200] * 3
    finally:
        admin.close()
        stop(server.proc)
    with Session(engine) as s:
        assert len(s.exec(select(Pledge).where(Pledge.need_id == need_id)).all()) == 10


@only("sqlite")
@pytest.mark.slow
def test_a_body_over_the_limit_is_refused_413_before_it_is_read_or_as_it_streams(database_url, engine, session):
    coordinator = make_user(session, "coordinator")
    build = Logistics(engine, coordinator)
    need_id = build.need(build.emergency(), status="draft")
    session.close()
    too_large = "The request is larger than 2 MB, the most this service accepts."
    flood = {"title": "Наводнение", "kind": "flood", "area": "Перник", "severity": "severe"}
    server = start_server(database_url, ACCORD_MAX_BODY_MB="2", ACCORD_ATTACHMENT_MAX_MB="0.5")
    try:
        with english(server.url) as client:
            staff = token(client, coordinator)
            json_body = {**staff, "Content-Type": "application/json"}

            # Declared too large: answered before the route runs, so even a route that reads no body changes nothing.
            opened = client.post(f"/api/v1/needs/{need_id}/open", headers=staff, content=b"0" * (3 * MB))
            assert opened.status_code == 413
            assert opened.json() == {"detail": too_large}
            assert build.get(Need, need_id).status == NeedStatus.draft

            # Streamed with no length: refused as soon as it passes the limit, and nothing is created.
            huge = json.dumps({**flood, "description": "x" * 3 * MB}).encode()
            streaming = client.post("/api/v1/emergencies", headers=json_body, content=streamed(huge))
            assert streaming.status_code == 413
            assert streaming.json() == {"detail": too_large}
            assert emergencies_in(engine) == 1

            # A page gets the error page with the message, declared or streamed.
            for body in (pdf_upload(3 * MB), streamed(pdf_upload(3 * MB))):
                page = client.post("/verify", headers=MULTIPART, content=body)
                assert page.status_code == 413
                assert page.headers["content-type"].startswith("text/html")
                assert too_large in page.text

            # Under the limit, declared or streamed, the upload is read and checked, and the body goes through.
            for body in (pdf_upload(MB + MB // 2), streamed(pdf_upload(MB + MB // 2))):
                checked = client.post("/verify", headers={**MULTIPART, "Accept": "application/json"}, content=body)
                assert checked.status_code == 404, checked.text
                assert checked.json() == {"genuine": False}  # not a memorandum issued here
            made = client.post("/api/v1/emergencies", headers=json_body, content=streamed(json.dumps(flood).encode()))
            assert made.status_code == 201, made.text
            assert client.post(f"/api/v1/needs/{need_id}/open", headers=staff).status_code == 200
        assert emergencies_in(engine) == 2
    finally:
        stop(server.proc)


# --- rates per client address ---------------------------------------------------------------------------


def test_the_rate_limiter_counts_each_client_in_a_sliding_window():
    now = [0.0]
    limiter = limits.RateLimiter(3, 10, clock=lambda: now[0])
    assert [limiter.wait("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.wait("a") == 10  # until its first request leaves the window
    now[0] = 4
    assert limiter.wait("b") == 0  # another client has its own count
    assert limiter.wait("a") == 6  # a refusal is not counted: the wait does not grow
    now[0] = 10
    assert limiter.wait("a") == 0
    assert limiter.wait("b") == 0


def test_the_rate_limiter_forgets_quiet_clients_and_remembers_a_bounded_number():
    now = [0.0]
    limiter = limits.RateLimiter(1, 60, max_clients=100, clock=lambda: now[0])
    for n in range(1000):
        assert limiter.wait(f"10.0.{n // 256}.{n % 256}") == 0
    assert len(limiter) == 100  # the longest quiet ones went first
    assert limiter.wait("10.0.3.231") > 0  # the newest is still held back
    now[0] = 61
    assert limiter.wait("192.0.2.1") == 0
    assert len(limiter) == 1  # everyone quiet for a whole window is forgotten


def test_the_rate_limiter_lets_exactly_its_limit_through_from_many_threads():
    limiter = limits.RateLimiter(50, 60)
    allowed: list[bool] = []
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        allowed.extend(limiter.wait("198.51.100.7") == 0 for _ in range(100))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 50 and len(allowed) == 800


@only("sqlite")
@pytest.mark.slow
def test_logins_from_one_address_are_limited_on_both_routes_and_other_addresses_are_not(database_url, session):
    user = make_user(session, "coordinator")
    session.close()
    right = {"username": user.email, "password": PASSWORD}
    spray = {"username": "nobody@example.test", "password": "guess-number-1"}  # no account: no per-account lock
    server = start_server(database_url, **RATES)
    try:
        with english(server.url) as client:
            # The token route: three attempts from the first address, then even the right password waits.
            for _ in range(3):
                assert client.post(TOKEN, data=spray, headers={"X-Forwarded-For": FIRST}).status_code == 401
            refused = client.post(TOKEN, data=right, headers={"X-Forwarded-For": FIRST})
            assert refused.status_code == 429
            wait = int(refused.headers["retry-after"])
            assert 1 <= wait <= 4
            assert refused.json() == {"detail": f"Too many requests from your address. Try again in {wait} s."}

            # The login form: the same from the third address, shown as the form again with the message.
            for _ in range(3):
                assert form_login(client, spray["username"], spray["password"], THIRD).status_code == 401
            page = form_login(client, user.email, PASSWORD, THIRD)
            assert page.status_code == 429
            assert 1 <= int(page.headers["retry-after"]) <= 4
            assert "Too many requests from your address. Try again in" in page.text
            assert 'name="password"' in page.text and "accord_session" not in page.cookies
            # One count per address for both routes.
            assert client.post(TOKEN, data=right, headers={"X-Forwarded-For": THIRD}).status_code == 429

            # Another address is not held back, on either route.
            assert client.post(TOKEN, data=right, headers={"X-Forwarded-For": SECOND}).status_code == 200
            assert form_login(client, user.email, PASSWORD, SECOND).status_code == 303

            # Once its window has passed, the first address may log in again.
            time.sleep(wait)
            assert client.post(TOKEN, data=right, headers={"X-Forwarded-For": FIRST}).status_code == 200
    finally:
        stop(server.proc)


@only("sqlite")
@pytest.mark.slow
def test_anonymous_uploads_from_one_address_are_limited_before_they_are_read(database_url):
    server = start_server(database_url, **RATES)
    try:
        with english(server.url) as client:

            def upload(address: str, accept: str = "application/json") -> httpx.Response:
                files = {"file": ("photo.jpg", b"\xff\xd8\xff\xe0", "image/jpeg")}
                return client.post("/verify", files=files, headers={"X-Forwarded-For": address, "Accept": accept})

            for _ in range(2):
                assert upload(FIRST).status_code == 422  # read: not a PDF
            refused = upload(FIRST)
            assert refused.status_code == 429
            wait = int(refused.headers["retry-after"])
            assert 1 <= wait <= 4
            detail = f"Too many requests from your address. Try again in {wait} s."
            assert refused.json() == {"genuine": False, "detail": detail}
            page = upload(FIRST, "text/html")
            assert page.status_code == 429 and "retry-after" in page.headers
            assert "Too many requests from your address. Try again in" in page.text

            assert upload(SECOND).status_code == 422
            time.sleep(wait)
            assert upload(FIRST).status_code == 422
    finally:
        stop(server.proc)


# --- list lengths ---------------------------------------------------------------------------------------


def test_bare_lists_take_a_limit_of_at_most_500_and_refuse_more_naming_the_field(client, session, engine):
    staff = make_user(session, "admin", "coordinator", "communications")
    headers = bearer(session, staff)
    org = make_partner(session)
    make_user(session, "partner", organisation=org)
    session.add(Contact(organisation_id=org.id, full_name="Мария Петрова"))
    session.commit()
    build = Logistics(engine, staff)
    emergency_id = build.emergency()
    need_id = build.need(emergency_id)
    pledge_id = build.pledge(need_id, org.id, "partial")
    consultation_id = decided(session, stakeholders=(Stakeholder(),), coordinator=staff).consultation.id
    bulletin_id = Officers(client, session).published()["id"]
    paths = [
        f"/api/v1/emergencies/{emergency_id}/needs",
        f"/api/v1/needs/{need_id}/pledges",
        f"/api/v1/pledges/{pledge_id}/receipts",
        f"/api/v1/consultations/{consultation_id}/submissions",
        f"/api/v1/bulletins/{bulletin_id}/revisions",
        f"/api/v1/partners/{org.id}/contacts",
        f"/api/v1/partners/{org.id}/users",
    ]
    for path in paths:
        whole = client.get(path, headers=headers)
        assert whole.status_code == 200, (path, whole.text)
        assert isinstance(whole.json(), list) and whole.json(), path  # still a bare list, as the contract has it
        for bad in ("501", "0", "-1", "ten"):
            refused = client.get(path, params={"limit": bad}, headers=headers)
            assert refused.status_code == 422, (path, bad)
            assert [item["loc"] for item in refused.json()["detail"]] == [["query", "limit"]], (path, bad)
        assert client.get(path, params={"limit": 1}, headers=headers).json() == whole.json()[:1], path
        assert client.get(path, params={"offset": 1}, headers=headers).json() == whole.json()[1:], path


def test_more_pledges_than_the_cap_list_the_newest_500_and_the_rest_by_offset(client, session, engine):
    coordinator = make_user(session, "coordinator")
    org = make_partner(session)
    build = Logistics(engine, coordinator)
    need_id = build.need(build.emergency())
    with Session(write_engine(engine)) as s:  # a partner that pledged and withdrew, 501 times
        s.add_all(
            Pledge(
                need_id=need_id,
                organisation_id=org.id,
                quantity=Decimal(1),
                deliver_by=utcnow(),
                status=PledgeStatus.withdrawn,
            )
            for _ in range(501)
        )
        s.commit()
        newest_first = sorted(s.exec(select(Pledge.id).where(Pledge.need_id == need_id)), reverse=True)
    headers = bearer(session, coordinator)
    path = f"/api/v1/needs/{need_id}/pledges"
    listed = client.get(path, headers=headers)
    assert listed.status_code == 200
    assert [p["id"] for p in listed.json()] == newest_first[:500]
    rest = client.get(path, params={"limit": 500, "offset": 500}, headers=headers)
    assert [p["id"] for p in rest.json()] == newest_first[500:]


# --- a database that does not answer in time ------------------------------------------------------------


def test_the_apps_engine_has_the_timeouts_and_the_commands_engine_has_none(database_url, monkeypatch):
    monkeypatch.setattr(settings, "sqlite_write_wait_seconds", 2.5)
    apps, commands = create_db_engine(database_url, timeouts=True), create_db_engine(database_url)
    try:
        assert apps.pool.timeout() == settings.db_pool_timeout_seconds
        with apps.connect() as app_conn, commands.connect() as command_conn:
            if apps.dialect.name == "postgresql":
                shown = "SHOW statement_timeout", "SHOW lock_timeout"
                assert [app_conn.exec_driver_sql(q).scalar() for q in shown] == ["15s", "10s"]
                assert [command_conn.exec_driver_sql(q).scalar() for q in shown] == ["0", "0"]
            else:
                assert app_conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2500
                assert command_conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        apps.dispose()
        commands.dispose()


@only("postgresql")
@pytest.mark.slow
@pytest.mark.parametrize(
    "timeouts",
    [
        pytest.param({"ACCORD_DB_LOCK_TIMEOUT_SECONDS": "1", "ACCORD_DB_STATEMENT_TIMEOUT_SECONDS": "60"}, id="lock"),
        pytest.param(
            {"ACCORD_DB_LOCK_TIMEOUT_SECONDS": "0", "ACCORD_DB_STATEMENT_TIMEOUT_SECONDS": "1"}, id="statement"
        ),
    ],
)
def test_a_request_stuck_behind_a_lock_on_postgresql_is_answered_503_and_the_worker_is_free(
    timeouts, database_url, engine, session
):
    coordinator = make_user(session, "coordinator")
    org = make_partner(session)
    partner = make_user(session, "partner", organisation=org)
    build = Logistics(engine, coordinator)
    emergency_id = build.emergency()
    need_id = build.need(emergency_id)
    session.close()
    pledge = {"quantity": 5, "deliver_by": utcnow().isoformat()}
    path = f"/api/v1/needs/{need_id}/pledges"
    server = start_server(database_url, **timeouts)
    holder = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        with english(server.url) as client, english(server.url) as browser:
            rep = token(client, partner)
            assert form_login(browser, coordinator.email, PASSWORD).status_code == 303
            holder.execute("LOCK TABLE need IN ACCESS EXCLUSIVE MODE")  # held until the rollback below

            began = time.monotonic()
            stuck = client.post(path, json=pledge, headers=rep)
            assert stuck.status_code == 503, stuck.text
            assert time.monotonic() - began < 10  # the 1-s timeout, not the lock's end
            assert stuck.headers["retry-after"] == "5"
            assert stuck.json() == {"detail": BUSY}
            board = browser.get(f"/staff/emergencies/{emergency_id}")
            assert board.status_code == 503
            assert board.headers["retry-after"] == "5"
            assert board.headers["content-type"].startswith("text/html") and BUSY in board.text

            holder.rollback()
            done = client.post(path, json=pledge, headers=rep)
            assert done.status_code == 201, done.text
            assert browser.get(f"/staff/emergencies/{emergency_id}").status_code == 200
        with Session(engine) as s:
            assert len(s.exec(select(Pledge).where(Pledge.need_id == need_id)).all()) == 1  # the refused one left none
    finally:
        holder.close()
        stop(server.proc)


@only("sqlite")
@pytest.mark.slow
def test_a_write_stuck_behind_another_writer_on_sqlite_is_answered_503_and_goes_through_after(
    database_url, engine, session
):
    coordinator = make_user(session, "coordinator")
    org = make_partner(session)
    partner = make_user(session, "partner", organisation=org)
    build = Logistics(engine, coordinator)
    need_id = build.need(build.emergency())
    session.close()
    pledge = {"quantity": 5, "deliver_by": utcnow().isoformat()}
    path = f"/api/v1/needs/{need_id}/pledges"
    server = start_server(database_url, ACCORD_SQLITE_WRITE_WAIT_SECONDS="1")
    holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        with english(server.url) as client:
            rep = token(client, partner)
            holder.execute("BEGIN IMMEDIATE")  # another process's writer, holding the write lock

            began = time.monotonic()
            stuck = client.post(path, json=pledge, headers=rep)
            assert stuck.status_code == 503, stuck.text
            assert time.monotonic() - began < 10
            assert stuck.headers["retry-after"] == "5"
            assert stuck.json() == {"detail": BUSY}
            assert client.get(f"/api/v1/needs/{need_id}", headers=rep).status_code == 200  # readers go on

            holder.execute("ROLLBACK")
            done = client.post(path, json=pledge, headers=rep)
            assert done.status_code == 201, done.text
        with Session(engine) as s:
            assert len(s.exec(select(Pledge).where(Pledge.need_id == need_id)).all()) == 1
    finally:
        holder.close()
        stop(server.proc)


@only("sqlite")
def test_no_write_slot_in_time_on_sqlite_is_answered_503_as_json_or_the_error_page(database_url, session, monkeypatch):
    user = make_user(session, "coordinator")
    session.close()
    monkeypatch.setattr(settings, "sqlite_write_wait_seconds", 0.5)
    monkeypatch.setattr(settings, "public_mirror", False)
    engine = create_db_engine(database_url, timeouts=True)
    right = {"username": user.email, "password": PASSWORD}
    try:
        with TestClient(create_app(engine, run_scheduler=False), follow_redirects=False) as client:
            client.cookies.set("accord_lang", "en")
            client.get("/login")
            form = {"email": user.email, "password": PASSWORD, "csrf_token": client.cookies.get("accord_csrf")}
            with Session(write_engine(engine)) as holder:
                holder.exec(select(User)).first()  # this process's write slot, taken and kept
                api = client.post(TOKEN, data=right)
                assert api.status_code == 503
                assert api.headers["retry-after"] == "5"
                assert api.json() == {"detail": BUSY}
                page = client.post("/login", data=form)
                assert page.status_code == 503
                assert page.headers["content-type"].startswith("text/html") and BUSY in page.text
            assert client.post(TOKEN, data=right).status_code == 200
            assert client.post("/login", data=form).status_code == 303
    finally:
        engine.dispose()


@only("postgresql")
def test_no_free_connection_in_time_on_postgresql_is_answered_503(database_url, session, monkeypatch):
    headers = {**bearer(session, make_user(session, "coordinator")), "Accept-Language": "en"}
    session.close()
    monkeypatch.setattr(settings, "public_mirror", False)
    engine = sa.create_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.5)
    try:
        with TestClient(create_app(engine, run_scheduler=False)) as client:
            with engine.connect():  # the pool's only connection, taken
                busy = client.get("/api/v1/emergencies", headers=headers)
                assert busy.status_code == 503
                assert busy.headers["retry-after"] == "5"
                assert busy.json() == {"detail": BUSY}
            assert client.get("/api/v1/emergencies", headers=headers).status_code == 200
    finally:
        engine.dispose()
