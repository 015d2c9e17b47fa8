"""Operations: request ids on every log line, `/readyz`, and `/metrics` — on real servers, on both backends."""

import fcntl
import inspect
import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, func, select

from service import observability, scheduler
from service.config import settings
from service.db import write_engine
from service.emergencies.models import Pledge
from service.memoranda.models import Memorandum, MemorandumStatus
from service.notifications import service as outbox
from service.notifications.models import OutboxMessage
from tests.conftest import PROJECT, _drop_pg_database, accord_env, free_port, stop, wait_for
from tests.emergencies.build import Logistics
from tests.factories import make_partner, make_user
from tests.memoranda.build import make_draft

LOOPBACK = ("127.0.0.1", 50000)
MADE_ID = re.compile(r"[0-9a-f]{32}")


# --- helpers -------------------------------------------------------------------------------------------


@dataclass
class Served:
    url: str
    log: Path
    metrics_dir: Path
    proc: subprocess.Popen

    def lines(self) -> list[dict]:
        """Every line the server wrote to stderr, each parsed as JSON (one that is not fails the test)."""
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@contextmanager
def serving(database_url: str, data_dir: Path, *args: str, workers: int = 1, **env: str) -> Iterator[Served]:
    """`accord serve ARGS` with JSON logs on stderr, kept in a file, and its data (metric files) under `data_dir`."""
    port = free_port()
    log = data_dir / "stderr.log"
    settings_env = {"ACCORD_RUN_SCHEDULER": "false", "ACCORD_LOG_FORMAT": "json", "ACCORD_DATA_DIR": str(data_dir)}
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", str(workers), *args],
            cwd=PROJECT,
            env=accord_env(database_url, **settings_env, **env),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url + "/healthz", proc)
        yield Served(url, log, data_dir / "metrics", proc)
    finally:
        stop(proc)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """A scrape parsed by prometheus-client's own parser: {(sample name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def scrape(client: TestClient | httpx.Client, **headers: str) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def loopback(app: FastAPI) -> TestClient:
    return TestClient(app, client=LOOPBACK)


def counted_here() -> dict[tuple[str, frozenset], float]:
    """This test process's own metrics (no shared files here: one process)."""
    return samples(generate_latest(observability.metrics().registry).decode())


# --- request ids and log lines -------------------------------------------------------------------------


@pytest.mark.slow
def test_every_json_line_of_a_request_carries_its_id(database_url, tmp_path):
    with serving(database_url, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        given = http.get("/healthz", headers={"X-Request-ID": "lb-7f3a.check_1"})
        assert given.text == "ok"
        assert given.headers["x-request-id"] == "lb-7f3a.check_1"  # a sane id from the proxy is kept

        replaced = {
            bad: http.get("/healthz", headers={"X-Request-ID": bad}).headers["x-request-id"]
            for bad in ("x" * 65, "spaces and <script>", "semi;colon")
        }
        assert all(MADE_ID.fullmatch(made) for made in replaced.values()), replaced
        made = http.get("/api/v1/needs/4711/pledges").headers["x-request-id"]  # 401: no token
        assert MADE_ID.fullmatch(made)
        assert len({made, *replaced.values()}) == 4  # each request its own
    lines = server.lines()  # after the server stopped: its shutdown lines are JSON too

    assert all({"ts", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
    started = [line for line in lines if line["message"] == "Application startup complete."]
    assert started and started[0]["logger"] == "uvicorn.error" and started[0]["request_id"] is None

    access = {line["request_id"]: line for line in lines if line["logger"] == "accord.access"}
    first = access["lb-7f3a.check_1"]
    assert (first["method"], first["path"], first["route"], first["status"]) == ("GET", "/healthz", "/healthz", 200)
    assert first["duration_ms"] >= 0 and first["level"] == "INFO"
    assert set(replaced.values()) <= set(access)
    pledges = access[made]
    assert (pledges["path"], pledges["route"], pledges["status"]) == (
        "/api/v1/needs/4711/pledges", "/api/v1/needs/{need_id}/pledges", 401,
    )  # fmt: skip
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]  # ours replaces uvicorn's


def test_text_lines_read_time_level_logger_request_id_and_message(app):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(observability.TextFormatter())
    access = logging.getLogger("accord.access")
    access.addHandler(handler)
    kept = access.level
    access.setLevel(logging.INFO)
    try:
        with TestClient(app) as client:
            assert client.get("/healthz", headers={"X-Request-ID": "desk-42"}).headers["x-request-id"] == "desk-42"
    finally:
        access.removeHandler(handler)
        access.setLevel(kept)
    [line] = stream.getvalue().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO accord\.access \[desk-42\] GET /healthz 200 \d+\.\d ms", line
    ), line


def test_a_crash_is_answered_500_with_the_id_and_counted():
    crashing = FastAPI()

    @crashing.get("/boom/{n}")
    def boom(n: int) -> None:
        raise RuntimeError("a bug")

    crashing.add_middleware(observability.RequestObservability)
    labels = {"method": "GET", "route": "/boom/{n}", "status": "500"}
    before = value(counted_here(), "http_requests_total", **labels)
    with TestClient(crashing, raise_server_exceptions=False) as client:
        answer = client.get("/boom/3", headers={"X-Request-ID": "crash-1"})
    assert (answer.status_code, answer.text) == (500, "Internal Server Error")
    assert answer.headers["x-request-id"] == "crash-1"  # Starlette's own 500 would have gone without it
    assert value(counted_here(), "http_requests_total", **labels) == before + 1


# --- /readyz -------------------------------------------------------------------------------------------


def _code_head() -> tuple[str, str]:
    """The code's migration head and the revision before it."""
    from alembic.script import ScriptDirectory

    from service.db import alembic_config

    script = ScriptDirectory.from_config(alembic_config(""))
    head = script.get_revision(script.get_current_head())
    return head.revision, head.down_revision


def _make_unreachable(database_url: str) -> None:
    """PostgreSQL: the database is dropped under the server. SQLite: the file (and its WAL) is overwritten."""
    if database_url.startswith("postgresql"):
        _drop_pg_database(database_url.rsplit("/", 1)[1])
        return
    path = database_url.removeprefix("sqlite:///")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            size = max(os.path.getsize(path + suffix), 4096)
            with open(path + suffix, "r+b") as file:
                file.write(b"not a database. " * (size // 16))


@pytest.mark.slow
def test_readyz_checks_the_database_and_its_migration(database_url, engine, tmp_path):
    head, previous = _code_head()
    assert not inspect.iscoroutinefunction(observability.readyz)  # it runs in the thread pool
    with serving(database_url, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}, "revision": head}
        assert http.get("/healthz").text == "ok"  # unchanged: no database work

        with write_engine(engine).begin() as conn:  # as if this version were deployed before `accord migrate`
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :rev"), {"rev": previous})
        engine.dispose()
        behind = http.get("/readyz")
        assert behind.status_code == 503
        assert behind.json()["status"] == "not ready"
        assert behind.json()["checks"] == {
            "database": "ok",
            "migrations": f"behind: the database is at {previous}, this version needs {head}",
        }

        _make_unreachable(database_url)
        down = http.get("/readyz", headers={"X-Request-ID": "probe-down-1"})
        assert down.status_code == 503
        # The error's class only: the answer is public, and a driver's message names hosts and users.
        assert re.fullmatch(r"unreachable \((OperationalError|DatabaseError)\)", down.json()["checks"]["database"])
        assert down.json()["checks"]["migrations"] == "not checked"

        # The numbers that need the database say so; the request counts are still there.
        metrics = scrape(http)
        assert value(metrics, "accord_database_up") == 0
        assert value(metrics, "http_requests_total", method="GET", route="/readyz", status="503") == 2
        assert value(metrics, "http_requests_total", method="GET", route="/readyz", status="200") == 1
    lines = server.lines()

    # The warning is logged in the thread pool thread that ran the route, and names the request.
    [warning] = [line for line in lines if line["message"] == "not ready: the database did not answer"]
    assert warning["request_id"] == "probe-down-1"
    assert warning["level"] == "WARNING" and warning["logger"] == "accord.observability"
    assert "Traceback" in warning["exception"]
    [access] = [line for line in lines if line["logger"] == "accord.access" and line["request_id"] == "probe-down-1"]
    assert (access["route"], access["status"]) == ("/readyz", 503)


# --- /metrics ------------------------------------------------------------------------------------------


def _by_status(engine, column) -> dict[str, int]:
    with Session(engine) as session:
        return {str(status): count for status, count in session.exec(select(column, func.count()).group_by(column))}


def test_metrics_count_requests_by_route_and_the_database_by_status(engine, session, app, smtp_server, monkeypatch):
    controller, collector = smtp_server
    monkeypatch.setattr(settings, "public_cache_seconds", 60)  # the second visit is surely answered from the copy
    monkeypatch.setattr(scheduler, "_engine", None)  # put back after the runner below has set it
    coordinator = make_user(session, "coordinator")
    partner = make_partner(session, email="office@partner.example")
    build = Logistics(engine, coordinator)
    need = build.need(build.emergency(), quantity=1000)
    for state in ("offered", "offered", "accepted", "declined", "withdrawn", "delivered"):
        build.pledge(need, partner.id, state)
    drafts = [make_draft(session, coordinator, [partner]) for _ in range(3)]
    cancelled = session.get(Memorandum, drafts[0].id)
    cancelled.status = MemorandumStatus.cancelled
    session.add(cancelled)
    for n in range(3):
        outbox.enqueue(session=session, to_address=f"staff{n}@example.test", subject="Тест", body="Здравейте")
    session.commit()

    with loopback(app) as client:
        before = scrape(client)
        for need_id in (need, 999_999):
            client.get(f"/api/v1/needs/{need_id}/pledges")
        client.get("/no/such/page/12345")
        client.get("/")
        client.get("/")  # from this process's copy of the page, before any routing
        after = scrape(client)

        def grew(route: str, status: str) -> float:
            labels = {"method": "GET", "route": route, "status": status}
            return value(after, "http_requests_total", **labels) - value(before, "http_requests_total", **labels)

        assert grew("/api/v1/needs/{need_id}/pledges", "401") == 2
        assert grew("unmatched", "404") == 1
        assert grew("/", "200") == 2
        assert grew("/metrics", "200") == 1  # the first scrape, counted once it was answered
        routes = {dict(labels).get("route") for _name, labels in after}
        assert not {route for route in routes if route and re.search(r"/\d+", route)}  # templates, never raw ids
        duration = value(after, "http_request_duration_seconds_count", method="GET", route="/") - value(
            before, "http_request_duration_seconds_count", method="GET", route="/"
        )
        assert duration == 2

        pledges = _by_status(engine, Pledge.status)
        assert pledges == {"offered": 2, "accepted": 1, "declined": 1, "withdrawn": 1, "delivered": 1}
        for status in ("offered", "accepted", "in_transit", "delivered", "declined", "withdrawn", "expired"):
            assert value(after, "accord_pledges", status=status) == pledges.get(status, 0), status
        memoranda = _by_status(engine, Memorandum.status)
        assert memoranda == {"draft": 2, "cancelled": 1}
        for status in MemorandumStatus:
            assert value(after, "accord_memoranda", status=status.value) == memoranda.get(status.value, 0)
        unsent = _by_status(engine, OutboxMessage.status)
        assert unsent.get("pending", 0) >= 3  # ours, and what the pledge decisions told the partner
        assert value(after, "accord_outbox_backlog") == unsent.get("pending", 0) + unsent.get("sending", 0)
        assert value(after, "accord_outbox_oldest_unsent_age_seconds") > 0
        assert value(after, "accord_database_up") == 1

        # The outbox job, run by the real scheduler: its run is counted and the backlog is what is left.
        monkeypatch.setattr(settings, "smtp_host", controller.hostname)
        monkeypatch.setattr(settings, "smtp_port", controller.port)
        job = {"job": "notifications.send_outbox"}
        runs_before = value(after, "accord_job_runs_total", **job)
        runner = scheduler.SchedulerRunner(engine)
        runner.start()
        try:
            deadline = time.monotonic() + 60
            while value(scraped := scrape(client), "accord_job_runs_total", **job) == runs_before:
                assert time.monotonic() < deadline, "the outbox job did not run"
                time.sleep(0.2)
        finally:
            runner.stop()
        assert value(scraped, "accord_job_runs_total", **job) == runs_before + 1
        assert value(scraped, "accord_job_failures_total", **job) == value(before, "accord_job_failures_total", **job)
        assert {"staff0@example.test", "staff1@example.test"} <= {e.rcpt_tos[0] for e, _ in collector.messages}
        final = scrape(client)
        left = _by_status(engine, OutboxMessage.status)
        assert value(final, "accord_outbox_backlog") == left.get("pending", 0) + left.get("sending", 0)
        assert value(final, "accord_outbox_messages", status="sent") == left["sent"] >= 3


def test_a_job_run_is_counted_failed_or_not_and_its_lines_name_the_job():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(observability.JsonFormatter())
    logger = logging.getLogger("accord.tests.jobs")
    logger.addHandler(handler)
    logger.propagate = False
    before = counted_here()
    try:
        with observability.job_run("tests.flaky"):
            logger.warning("working")
        with pytest.raises(RuntimeError), observability.job_run("tests.flaky"):
            raise RuntimeError("the SMTP server went away")
        logger.warning("between jobs")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    after = counted_here()
    for name, grown in (("accord_job_runs_total", 2), ("accord_job_failures_total", 1)):
        assert value(after, name, job="tests.flaky") == value(before, name, job="tests.flaky") + grown
    assert value(after, "accord_job_duration_seconds_count", job="tests.flaky") == 2 + value(
        before, "accord_job_duration_seconds_count", job="tests.flaky"
    )
    working, between = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (working["job"], working["request_id"]) == ("tests.flaky", None)
    assert "job" not in between
    with pytest.raises(LookupError, match=r"no\.such\.job"):
        scheduler.run_job("no.such.job")


def test_metrics_are_for_the_monitoring_system_only(app, monkeypatch):
    with TestClient(app, client=("203.0.113.9", 40000)) as afar, loopback(app) as near:
        assert afar.get("/metrics").status_code == 403
        assert near.get("/metrics").status_code == 200
        schema = near.get("/openapi.json").json()["paths"]
        assert "/metrics" not in schema and "/readyz" not in schema and "/healthz" not in schema

        monkeypatch.setattr(settings, "metrics_token", "scrape-secret-1")
        assert near.get("/metrics").status_code == 403  # a token configured: loopback alone is not enough
        for wrong in ("Bearer scrape-secret-2", "Bearer ", "Basic scrape-secret-1", "scrape-secret-1"):
            assert afar.get("/metrics", headers={"Authorization": wrong}).status_code == 403, wrong
        assert afar.get("/metrics", headers={"Authorization": "Bearer scrape-secret-1"}).status_code == 200


def _per_process(metrics_dir: Path, route: str) -> dict[str, float]:
    """What each worker process counted for `route`, read from its own metric file."""
    counts = {}
    for path in metrics_dir.glob("serve-*/counter_*.db"):
        for family in MultiProcessCollector.merge([str(path)], accumulate=False):
            for sample in family.samples:
                if sample.name == "http_requests_total" and sample.labels["route"] == route:
                    counts[path.name] = counts.get(path.name, 0) + sample.value
    return counts


@pytest.mark.slow
def test_metrics_add_up_across_worker_processes(database_url, tmp_path):
    with serving(database_url, tmp_path, "--no-access-log", workers=2) as server:
        [metrics_dir] = server.metrics_dir.glob("serve-*")
        deadline = time.monotonic() + 90
        while server.log.read_text().count("Application startup complete.") < 2:
            assert time.monotonic() < deadline, "the second worker did not start"
            time.sleep(0.2)

        # From afar (through a proxy on this host, whose X-Forwarded-For uvicorn trusts): refused.
        forwarded = httpx.get(server.url + "/metrics", headers={"X-Forwarded-For": "203.0.113.7"}, timeout=30)
        assert forwarded.status_code == 403

        sent = 0

        def batch() -> None:
            nonlocal sent
            answered = []

            def client() -> None:
                with httpx.Client(base_url=server.url, timeout=30) as http:
                    answered.extend(http.get("/readyz").status_code for _ in range(10))

            threads = [threading.Thread(target=client) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert answered == [200] * 80
            sent += 80

        batch()
        while len(_per_process(server.metrics_dir, "/readyz")) < 2:  # until both workers have answered some
            assert time.monotonic() < deadline, _per_process(server.metrics_dir, "/readyz")
            batch()
        # A request is counted when its answer is complete, a moment after the client has it.
        while sum((per_process := _per_process(server.metrics_dir, "/readyz")).values()) < sent:
            assert time.monotonic() < deadline, per_process
            time.sleep(0.05)
        assert sum(per_process.values()) == sent and all(0 < n < sent for n in per_process.values())

        # Whichever worker answers a scrape (a new connection each time), it reports the total.
        totals = []
        for _ in range(8):
            with httpx.Client(base_url=server.url, timeout=30) as http:
                totals.append(value(scrape(http), "http_requests_total", method="GET", route="/readyz", status="200"))
        assert totals == [sent] * 8
        assert metrics_dir.is_dir()
    assert not metrics_dir.exists()  # the server's metric files go with it
    loggers = {line["logger"] for line in server.lines()}
    assert "uvicorn.error" in loggers and "accord.access" not in loggers  # behind nginx, no access lines


def test_the_metric_files_folder_is_fresh_and_swept_of_dead_servers(tmp_path):
    parent = tmp_path / "metrics"
    (parent / "serve-dead").mkdir(parents=True)
    (parent / "serve-dead" / "counter_1.db").write_bytes(b"stale")
    live = parent / "serve-live"
    live.mkdir()
    held = os.open(live, os.O_RDONLY)  # another server, still running, holds its folder's lock
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        with observability.multiprocess_metrics(parent) as path:
            assert os.environ[observability.MULTIPROCESS_ENV] == str(path)
            assert path.is_dir() and not any(path.iterdir())
            assert not (parent / "serve-dead").exists()
            assert live.is_dir()
        assert not path.exists()
        assert observability.MULTIPROCESS_ENV not in os.environ
    finally:
        os.close(held)
