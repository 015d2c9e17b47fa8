"""Pledge intake under load, against a bare `GET /healthz` on the same server in the same run; then the
coverage board's time on a big emergency.

Intake: 200 open needs (most large, some small so that 409s happen), 32 partner clients pledging against
random needs for 20 s, in two rounds alternating with the bare `/healthz` rounds. Afterwards every need's
live pledged total is checked against its quantity in the database, and the audit chain is verified.
Board: an emergency of 500 needs and 5,000 pledges (offered, accepted, in transit, delivered, declined;
receipts, overdue ones) and a triage list of offers; the data (`needs_with_coverage` + `overdue_pledges` +
offers) in-process, and the page through the server.

The load generator shares the machine with the server, so it is kept cheap: plain `http.client`
keep-alive connections (a tenth of httpx's cost per request), spread over several processes so that one
interpreter's GIL is not what limits the rate.
"""

import http.client
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import insert
from sqlmodel import Session, select

from bench.common import fresh_database, report_target, server
from service.audit import verify_chain
from service.auth import hash_password, issue_token
from service.db import create_db_engine, utcnow, write_engine
from service.emergencies import service
from service.emergencies.coverage import coverage_for
from service.emergencies.models import (
    EmergencyCreate,
    Need,
    NeedCreate,
    NeedStatus,
    Offer,
    OfferStatus,
    Pledge,
    PledgeStatus,
    Priority,
    Receipt,
)
from service.partners import service as partners
from service.partners.models import OrganisationCreate
from service.users.models import Role, User

CLIENTS = int(os.environ.get("BENCH_CLIENTS", 32))
PROCESSES = int(os.environ.get("BENCH_PROCESSES", 4))  # client processes; CLIENTS threads spread over them
SECONDS = float(os.environ.get("BENCH_SECONDS", 20))
BARE_SECONDS = float(os.environ.get("BENCH_BARE_SECONDS", 10))
# The bare rate and the intake are measured in alternating rounds, so that the machine's drift (other work
# on it moves either by a quarter between runs) falls on both alike instead of on one of them.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 2))
NEEDS = 200
SMALL_NEEDS = 20  # of 10 pcs: they fill up within seconds, and later pledges against them get 409
BOARD_NEEDS, BOARD_PLEDGES, BOARD_RENDERS = 500, 5000, 20
PASSWORD = "bench-password"
TARGET_RATIO, TARGET_P99_MS, TARGET_BOARD_MS = 0.25, 250.0, 150.0


# --- the load generator ---------------------------------------------------------------------------------


def _client_process(
    base_url: str, jobs: list[tuple[str, list[str]]], need_ids: list[int], start_at: float, seconds: float, out
) -> None:
    """Threads, one per (token, kind) job, each on its own keep-alive connection; sends its tallies back."""
    host, port = urlsplit(base_url).hostname, urlsplit(base_url).port
    deliver_by = (utcnow() + timedelta(days=3)).isoformat()
    results: list[tuple[dict[int, int], list[float]]] = []
    lock = threading.Lock()

    def worker(token: str, seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.connect()
        statuses: dict[int, int] = {}
        latencies: list[float] = []
        if token:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        time.sleep(max(0.0, start_at - time.time()))
        deadline = start_at + seconds
        while time.time() < deadline:
            if token:
                body = b'{"quantity":%d,"deliver_by":"%s"}' % (rng.randint(1, 5), deliver_by.encode())
                path = f"/api/v1/needs/{rng.choice(need_ids)}/pledges"
                began = time.perf_counter()
                conn.request("POST", path, body=body, headers=headers)
            else:
                began = time.perf_counter()
                conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            latencies.append(time.perf_counter() - began)
            statuses[response.status] = statuses.get(response.status, 0) + 1
        conn.close()
        with lock:
            results.append((statuses, latencies))

    threads = [threading.Thread(target=worker, args=(token, seed)) for token, seed in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(results)


class Load:
    """One run's tallies: answers by status, and the latency of each answer."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name, self.seconds = name, seconds
        self.statuses: dict[int, int] = {}
        self.latencies: list[float] = []

    def add(self, other: "Load") -> None:
        """Another round's tallies added to these."""
        self.seconds += other.seconds
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        self.latencies.extend(other.latencies)

    def rate(self, *statuses: int) -> float:
        count = sum(n for s, n in self.statuses.items() if not statuses or s in statuses)
        return count / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000 if ordered else 0.0


def run_load(name: str, base_url: str, tokens: list[str], need_ids: list[int], seconds: float) -> Load:
    """CLIENTS clients over PROCESSES processes; pledging when given tokens, else `GET /healthz`."""
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    start_at = time.time() + 1.5  # every connection is open by then
    jobs = [(tokens[i % len(tokens)] if tokens else "", i) for i in range(CLIENTS)]
    processes = [
        context.Process(target=_client_process, args=(base_url, jobs[p::PROCESSES], need_ids, start_at, seconds, out))
        for p in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    load = Load(name, seconds)
    for _ in processes:
        for statuses, latencies in out.get():
            for status, count in statuses.items():
                load.statuses[status] = load.statuses.get(status, 0) + count
            load.latencies.extend(latencies)
    for process in processes:
        process.join()
    return load


# --- intake ---------------------------------------------------------------------------------------------


def seed_intake(database_url: str) -> tuple[list[str], list[int]]:
    """A coordinator, CLIENTS partner organisations with a user and an API token each, and the open needs."""
    engine = create_db_engine(database_url)
    with Session(write_engine(engine), expire_on_commit=False) as session:
        coordinator = User(
            email="coordinator@example.test",
            full_name="Координатор",
            roles=[Role.coordinator],
            password_hash=hash_password(PASSWORD),
        )
        session.add(coordinator)
        session.commit()
        tokens = []
        for n in range(CLIENTS):
            org = partners.create(
                session=session,
                actor="bench",
                data=OrganisationCreate(name=f"Партньор {n:02d}", kind="business"),
                allow_duplicate=True,
            )
            user = User(
                email=f"partner{n}@example.test",
                full_name=f"Партньор {n}",
                roles=[Role.partner],
                organisation_id=org.id,
                password_hash=coordinator.password_hash,
            )
            session.add(user)
            session.commit()
            tokens.append(issue_token(session=session, user=user, kind="api"))
        emergency = service.declare(
            session=session,
            actor=coordinator,
            data=EmergencyCreate(title="Наводнение", kind="flood", area="Община", severity="severe"),
        )
        need_ids = []
        for n in range(NEEDS):
            need = service.add_need(
                session=session,
                actor=coordinator,
                emergency=emergency,
                open_now=True,
                data=NeedCreate(
                    item_name=f"Нужда {n}",
                    sector="food",
                    unit="pcs",
                    quantity=10 if n < SMALL_NEEDS else 1_000_000,
                    deliver_to="Склад",
                ),
            )
            need_ids.append(need.id)
    engine.dispose()
    return tokens, need_ids


def check_intake(database_url: str, need_ids: list[int]) -> tuple[int, int, int, bool]:
    """(needs over-committed, pledges on the intake's needs, audit rows checked, chain intact)."""
    engine = create_db_engine(database_url)
    with Session(engine) as session:
        needs = list(session.exec(select(Need)))
        coverage = coverage_for(session=session, needs=needs)
        violations = sum(c.pledged > c.needed for c in coverage.values())
        pledges = len(session.exec(select(Pledge.id).where(Pledge.need_id.in_(need_ids))).all())
        checked, broken = verify_chain(session)
    engine.dispose()
    return violations, pledges, checked, broken is None


# --- the coverage board ---------------------------------------------------------------------------------


def seed_board(database_url: str) -> int:
    """An emergency of BOARD_NEEDS needs and BOARD_PLEDGES pledges in every state, and offers to triage.

    Bulk-inserted (no audit rows): it is read-side data for the board, consistent with the invariant; on
    PostgreSQL then analysed, as autovacuum would."""
    engine = create_db_engine(database_url)
    rng = random.Random(7)
    now = utcnow()
    with Session(write_engine(engine), expire_on_commit=False) as session:
        coordinator = session.exec(select(User).where(User.email == "coordinator@example.test")).one()
        org_ids = [u.organisation_id for u in session.exec(select(User).where(User.organisation_id.is_not(None)))]
        emergency = service.declare(
            session=session,
            actor=coordinator,
            data=EmergencyCreate(title="Земетресение", kind="earthquake", area="Град", severity="extreme"),
        )
        priorities = list(Priority)
        needs = [
            Need(
                emergency_id=emergency.id,
                item_name=f"Артикул {n}",
                sector="shelter",
                unit="pcs",
                quantity=Decimal(1000),
                priority=priorities[n % 4],
                deliver_to=f"Пункт {n % 17}",
                needed_by=now + timedelta(hours=n % 72),
                status=NeedStatus.open,
                created_by_id=coordinator.id,
            )
            for n in range(BOARD_NEEDS)
        ]
        session.add_all(needs)
        session.flush()
        pledges = []
        for n in range(BOARD_PLEDGES):
            kind = rng.random()
            quantity = Decimal(rng.randint(1, 90))
            status = (
                PledgeStatus.offered
                if kind < 0.35
                else PledgeStatus.accepted
                if kind < 0.7
                else PledgeStatus.in_transit
                if kind < 0.8
                else PledgeStatus.delivered
                if kind < 0.9
                else PledgeStatus.declined
            )
            late = status in (PledgeStatus.accepted, PledgeStatus.in_transit) and rng.random() < 0.15
            pledges.append(
                Pledge(
                    need_id=needs[n % BOARD_NEEDS].id,
                    organisation_id=org_ids[n % len(org_ids)],
                    quantity=quantity,
                    status=status,
                    accepted_quantity=quantity - rng.randint(0, 1) if status != PledgeStatus.offered else None,
                    deliver_by=now - timedelta(hours=5) if late else now + timedelta(days=2),
                    created_by_id=coordinator.id,
                )
            )
        session.add_all(pledges)
        session.flush()
        receipts = []
        for pledge in pledges:
            if pledge.status == PledgeStatus.delivered:
                receipts.append({"pledge_id": pledge.id, "quantity": pledge.accepted_quantity, "received_at": now})
            elif pledge.status == PledgeStatus.in_transit and pledge.deliver_by > now and rng.random() < 0.5:
                receipts.append({"pledge_id": pledge.id, "quantity": Decimal(1), "received_at": now})
        session.execute(insert(Receipt), receipts)
        session.add_all(
            Offer(
                organisation_id=org_ids[n % len(org_ids)],
                item_name=f"Предложение {n}",
                sector="food",
                unit="kg",
                quantity=Decimal(10 + n),
                status=OfferStatus.offered,
            )
            for n in range(60)
        )
        session.commit()
        emergency_id = emergency.id
    if engine.dialect.name == "postgresql":
        # Statistics for the bulk load, as autovacuum gathers them within a minute of it. Timed at once
        # without them, the board's overdue query ran 62 ms instead of 0.9 on plans made for empty tables.
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    engine.dispose()
    return emergency_id


def time_board_data(database_url: str, emergency_id: int) -> float:
    """Median ms of the board's data, in-process, each time in a fresh session."""
    from service.emergencies.models import Emergency

    engine = create_db_engine(database_url)
    times = []
    for _ in range(BOARD_RENDERS + 1):
        with Session(engine) as session:
            began = time.perf_counter()
            emergency = session.get(Emergency, emergency_id)
            needs = service.needs_of(session=session, emergency=emergency)
            views = service.needs_with_coverage(session=session, needs=needs)
            overdue = service.overdue_pledges(session=session, emergency=emergency)
            offers, _ = service.list_offers(session=session, status=OfferStatus.offered, limit=500)
            times.append((time.perf_counter() - began) * 1000)
    assert len(views) == BOARD_NEEDS and overdue and offers
    engine.dispose()
    return statistics.median(times[1:])  # the first warms the caches


def time_board_page(base_url: str, emergency_id: int) -> tuple[str, float, int]:
    """(what was timed, median ms of BOARD_RENDERS renders through the server, bytes)."""
    with httpx.Client(base_url=base_url, timeout=60) as client:
        client.get("/login")
        csrf = client.cookies.get("accord_csrf")
        form = {"email": "coordinator@example.test", "password": PASSWORD, "csrf_token": csrf}
        login = client.post("/login", data=form, follow_redirects=False)
        path = f"/staff/emergencies/{emergency_id}"
        if login.status_code != 303 or client.get(path).status_code == 404:
            token = client.post("/api/v1/auth/token", data={"username": form["email"], "password": PASSWORD})
            client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            path = f"/api/v1/emergencies/{emergency_id}/coverage"
        times, size, encoding = [], 0, ""
        for _ in range(BOARD_RENDERS + 1):
            began = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, (response.status_code, response.text[:500])
            size, encoding = len(response.content), response.headers.get("content-encoding", "identity")
    return f"GET {path} ({encoding})", statistics.median(times[1:]), size


# --- the run --------------------------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


def run(backend: str) -> None:
    workers = 2 if backend == "postgresql" else 1
    with tempfile.TemporaryDirectory() as tmp, fresh_database(backend, Path(tmp)) as url:
        tokens, need_ids = seed_intake(url)
        with server(url, workers=workers) as base:
            bare, intake = Load("GET /healthz (bare)", 0), Load("POST …/pledges: 201s", 0)
            for _ in range(ROUNDS):
                bare.add(run_load(bare.name, base, [], need_ids, BARE_SECONDS / ROUNDS))
                intake.add(run_load(intake.name, base, tokens, need_ids, SECONDS / ROUNDS))
            emergency_id = seed_board(url)
            page, page_ms, page_bytes = time_board_page(base, emergency_id)
        violations, in_db, audit_rows, chain_intact = check_intake(url, need_ids)
        data_ms = time_board_data(url, emergency_id)

    created, refused = intake.statuses.get(201, 0), intake.statuses.get(409, 0)
    other = {status: n for status, n in intake.statuses.items() if status not in (201, 409)}
    ratio = intake.rate(201) / bare.rate()
    p99 = intake.percentile(99)
    sound = violations == 0 and not other and chain_intact and in_db == created
    rows = [
        (bare.name, bare.rate(), bare.percentile(50), bare.percentile(99), BARE_SECONDS),
        (intake.name, intake.rate(201), intake.percentile(50), p99, SECONDS),
    ]
    print(
        f"\n[{backend}] server workers {workers}; {CLIENTS} clients in {PROCESSES} processes, http.client keep-alive;"
        f" bare and intake alternating in {ROUNDS} rounds"
    )
    for name, rate, p50, p99_, seconds in rows:
        print(f"  {name:<24} {rate:8.1f} req/s   p50 {p50:6.1f} ms   p99 {p99_:6.1f} ms   ({seconds:.0f} s)")
    print(f"  answers: 201 {created}, 409 {refused}, other {other or 'none'} (all answers {intake.rate():.1f}/s)")
    print(
        f"  in the database: {in_db} pledges on these needs ({'= the 201s' if in_db == created else 'NOT the 201s'}),"
    )
    print(f"    audit chain of {audit_rows} rows {'intact' if chain_intact else 'BROKEN'}")
    print(f"  intake / bare {ratio:.3f}          target >= {TARGET_RATIO}: {verdict(ratio >= TARGET_RATIO)}")
    print(f"  pledge p99 {p99:.0f} ms           target < {TARGET_P99_MS:.0f} ms: {verdict(p99 < TARGET_P99_MS)}")
    print(f"  invariant violations {violations}     target 0: {verdict(sound)}")
    print(f"  board of {BOARD_NEEDS} needs, {BOARD_PLEDGES} pledges, median of {BOARD_RENDERS}:")
    print(f"    data in-process (needs_with_coverage + overdue_pledges + offers) {data_ms:.1f} ms")
    print(
        f"    {page}: {page_ms:.1f} ms, {page_bytes // 1024} KiB   "
        f"target < {TARGET_BOARD_MS:.0f} ms: {verdict(page_ms < TARGET_BOARD_MS)}"
    )
    name = f"pledges ({backend})"
    report_target(name, "pledge intake ÷ bare /healthz", f"{ratio:.3f}", f">= {TARGET_RATIO}", ratio >= TARGET_RATIO)
    report_target(name, "pledge p99", f"{p99:.0f} ms", f"< {TARGET_P99_MS:.0f} ms", p99 < TARGET_P99_MS)
    report_target(name, "invariant violations", str(violations), "0, every 201 stored, chain intact", sound)
    report_target(
        name, f"coverage board ({BOARD_NEEDS} needs, {BOARD_PLEDGES} pledges)", f"{page_ms:.0f} ms",
        f"< {TARGET_BOARD_MS:.0f} ms", page_ms < TARGET_BOARD_MS,
    )  # fmt: skip


if __name__ == "__main__":
    for backend in sys.argv[1:] or ["sqlite", "postgresql"]:
        run(backend)
