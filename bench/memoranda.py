"""Issuing a memorandum through the server against plain WeasyPrint of the same HTML, in the same run; then
`GET /healthz`'s p99 while ten memoranda are being issued at once against its p99 when idle, same server.

Issue: a coordinator's bearer token, fresh drafts made through `POST /api/v1/memoranda`, each timed through
`POST /api/v1/memoranda/{id}/issue` (render in a worker process, archive with fsync, audit, e-mails queued,
the answer); after each, the HTML of the very same memorandum (`documents.render_html` of its context) is
rendered by `weasyprint.HTML(...).write_pdf(pdf_variant="pdf/a-3b")` in this process. Alternating them keeps
the machine's drift out of the ratio. Health: a prober in its own process calls `GET /healthz` every few
milliseconds (as a load balancer would), first with the server idle, then while ten client threads each
make and issue drafts in a loop.

SQLite by default: an issue's database work is a few small writes beside a render of half a second, so the
backend hardly shows (`python bench/memoranda.py sqlite postgresql` runs both). The PDFs the server issues
land in the default archive (`bench.common.server` passes the server no `ACCORD_MEMORANDA_DIR`); they are
deleted again at the end, by the hashes the bench database recorded.
"""

import http.client
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import weasyprint
from pypdf import PdfReader
from sqlmodel import Session, col, select

from bench.common import PROJECT, fresh_database, report_target, server
from service import cpus, pdf
from service.auth import hash_password
from service.db import create_db_engine, write_engine
from service.memoranda import documents
from service.memoranda import service as memoranda
from service.memoranda.models import Memorandum
from service.partners import service as partners
from service.partners.models import ContactCreate, OrganisationCreate
from service.users.models import Role, User

KIND = os.environ.get("BENCH_MEMORANDUM_KIND", "logistics_support")
LANGUAGE = os.environ.get("BENCH_MEMORANDUM_LANGUAGE", "bg")
ISSUES = int(os.environ.get("BENCH_ISSUES", 15))  # timed issues, each followed by a timed plain render
WARM_ISSUES = 3  # the server's render workers start on the first issue; these are not timed
ISSUERS = 10
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", 10))
LOAD_SECONDS = float(os.environ.get("BENCH_LOAD_SECONDS", 20))
PROBE_INTERVAL = 0.005  # seconds between the prober's requests
PASSWORD = "bench-password"
COORDINATOR = "coordinator@example.test"
TARGET_ISSUE_RATIO, TARGET_HEALTHZ_RATIO = 1.15, 2.0
QUIET_CPU = 0.25  # busier than this during the idle probe, and other work was running
ARCHIVE = PROJECT / "memoranda"  # where `accord serve` stores them with no ACCORD_MEMORANDA_DIR

PARTNERS = [
    ("„Минерална вода Струма“ ЕООД", "113003225", "Николай Георгиев", "управител"),
    ("„Транс Логистик Примерно“ ООД", "175041154", "Васил Тодоров", "управител"),
]


# --- data -----------------------------------------------------------------------------------------------


def seed(database_url: str) -> list[int]:
    """A coordinator who logs in with PASSWORD, and the two partner organisations of the sample; their ids."""
    engine = create_db_engine(database_url)
    with Session(write_engine(engine), expire_on_commit=False) as session:
        coordinator = User(
            email=COORDINATOR, full_name="Координатор", roles=[Role.coordinator], password_hash=hash_password(PASSWORD)
        )
        session.add(coordinator)
        session.commit()
        ids = []
        for name, number, person, title in PARTNERS:
            org = partners.create(
                session=session,
                actor=coordinator,
                data=OrganisationCreate(name=name, kind="business", registration_number=number, address="гр. Примерно"),
            )
            partners.add_contact(
                session=session, actor=coordinator, org=org, data=ContactCreate(full_name=person, role=title)
            )
            ids.append(org.id)
    engine.dispose()
    return ids


def draft_body(partner_ids: list[int]) -> bytes:
    """The JSON of `POST /api/v1/memoranda`: the sample's variables, signing within two weeks, a year long."""
    today = memoranda.today()
    variables = json.loads(documents.variables_json(documents.sample_variables(KIND, LANGUAGE)))
    body = {
        "template": KIND,
        "language": LANGUAGE,
        "partner_ids": partner_ids,
        "variables": variables,
        "signing_deadline": str(today + timedelta(days=14)),
        "valid_from": str(today),
        "valid_until": str(today + timedelta(days=365)),
    }
    return json.dumps(body).encode()


class Client:
    """One keep-alive connection with the coordinator's token (plain `http.client`: cheap on the shared CPU)."""

    def __init__(self, base_url: str, token: str) -> None:
        parts = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def post(self, path: str, body: bytes = b"") -> tuple[int, dict]:
        self.conn.request("POST", path, body=body, headers=self.headers)
        response = self.conn.getresponse()
        content = response.read()
        if response.getheader("content-type", "").startswith("application/json"):
            return response.status, json.loads(content)
        return response.status, {"detail": content.decode(errors="replace")[:300]}

    def draft(self, body: bytes) -> int:
        status, answer = self.post("/api/v1/memoranda", body)
        assert status == 201, (status, answer)
        return answer["id"]

    def issue(self, memorandum_id: int) -> tuple[int, float]:
        """(status, seconds) of issuing the draft."""
        began = time.perf_counter()
        status, answer = self.post(f"/api/v1/memoranda/{memorandum_id}/issue")
        seconds = time.perf_counter() - began
        assert status != 200 or answer["status"] == "issued", answer
        return status, seconds

    def close(self) -> None:
        self.conn.close()


def coordinator_token(base_url: str) -> str:
    form = {"username": COORDINATOR, "password": PASSWORD}
    answer = httpx.post(f"{base_url}/api/v1/auth/token", data=form, timeout=30)
    answer.raise_for_status()
    return answer.json()["access_token"]


# --- issue against plain WeasyPrint ---------------------------------------------------------------------


def html_of(engine, memorandum_id: int) -> str:
    """The HTML the server rendered when it issued this memorandum: the same context, the same sandbox."""
    with Session(engine) as session:
        memorandum = memoranda.get(session=session, memorandum_id=memorandum_id)
        context = memoranda.document_context(session=session, memorandum=memorandum, draft=False)
    return documents.render_html(KIND, LANGUAGE, context=context)


def plain_weasyprint(html: str) -> tuple[float, bytes]:
    began = time.perf_counter()
    data = weasyprint.HTML(string=html, base_url=f"{pdf.TEMPLATES_DIR}/").write_pdf(pdf_variant="pdf/a-3b")
    return time.perf_counter() - began, data


def time_issues(base_url: str, token: str, database_url: str, partner_ids: list[int]) -> tuple[list, list, int]:
    """(issue seconds, plain WeasyPrint seconds, pages), ISSUES of each, alternating."""
    engine = create_db_engine(database_url)
    client = Client(base_url, token)
    body = draft_body(partner_ids)
    issued, plain, pages = [], [], 0
    for n in range(WARM_ISSUES + ISSUES):
        memorandum_id = client.draft(body)
        status, seconds = client.issue(memorandum_id)
        assert status == 200, status
        html = html_of(engine, memorandum_id)
        plain_seconds, data = plain_weasyprint(html)
        if n >= WARM_ISSUES:
            issued.append(seconds)
            plain.append(plain_seconds)
        pages = len(PdfReader(BytesIO(data)).pages)
    client.close()
    engine.dispose()
    return issued, plain, pages


# --- /healthz idle and under issuing --------------------------------------------------------------------


def _probe(base_url: str, start_at: float, seconds: float, out) -> None:
    """`GET /healthz` every PROBE_INTERVAL from `start_at` for `seconds`; sends back (latencies, non-200s)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.connect()
    latencies, errors = [], 0
    time.sleep(max(0.0, start_at - time.time()))
    deadline = start_at + seconds
    next_at = time.perf_counter()
    while time.time() < deadline:
        began = time.perf_counter()
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - began)
        errors += response.status != 200
        next_at = max(next_at + PROBE_INTERVAL, time.perf_counter())
        time.sleep(max(0.0, next_at - time.perf_counter()))
    conn.close()
    out.put((latencies, errors))


def probe(base_url: str, seconds: float, *, start_in: float = 0.5, during=None) -> tuple[list[float], int]:
    """The prober's (latencies, errors), from its own process; `during(stop)` runs meanwhile in this one."""
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    prober = context.Process(target=_probe, args=(base_url, time.time() + start_in, seconds, out))
    prober.start()  # forked before any thread of `during` starts
    stop = threading.Event()
    runner = threading.Thread(target=during, args=(stop,)) if during else None
    if runner:
        runner.start()
    latencies, errors = out.get()
    prober.join()
    stop.set()
    if runner:
        runner.join()
    return latencies, errors


class Issuing:
    """ISSUERS client threads, each making a draft and issuing it, again and again, until stopped."""

    def __init__(self, base_url: str, token: str, partner_ids: list[int]) -> None:
        self.base_url, self.token, self.body = base_url, token, draft_body(partner_ids)
        self.lock = threading.Lock()
        self.statuses: dict[int, int] = {}
        self.latencies: list[float] = []
        self.seconds = 0.0

    def __call__(self, stop: threading.Event) -> None:
        began = time.monotonic()
        threads = [threading.Thread(target=self.issuer, args=(stop,)) for _ in range(ISSUERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.seconds = time.monotonic() - began

    def issuer(self, stop: threading.Event) -> None:
        client = Client(self.base_url, self.token)
        while not stop.is_set():
            status, seconds = client.issue(client.draft(self.body))
            with self.lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.latencies.append(seconds)
        client.close()


# --- the run --------------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000 if ordered else 0.0


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat; (0, 0) where there is none."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(n) for n in stat.readline().split()[1:]]
    except OSError:
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


def verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


def remove_issued(database_url: str) -> int:
    """Deletes the PDFs this run's server archived (by the hashes its database recorded); how many."""
    engine = create_db_engine(database_url)
    with Session(engine) as session:
        digests = session.exec(select(Memorandum.sha256).where(col(Memorandum.sha256).is_not(None))).all()
    engine.dispose()
    removed = 0
    for digest in digests:
        path = ARCHIVE / digest[:2] / f"{digest}.pdf"
        if path.exists():
            path.unlink()
            removed += 1
        if path.parent.is_dir() and not any(path.parent.iterdir()):
            path.parent.rmdir()
    return removed


def run(backend: str) -> None:
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, fresh_database(backend, Path(tmp)) as url:
        partner_ids = seed(url)
        try:
            with server(url) as base:
                token = coordinator_token(base)
                issued, plain, pages = time_issues(base, token, url, partner_ids)
                before = cpu_jiffies()
                idle, idle_errors = probe(base, IDLE_SECONDS)
                machine_busy = busy_share(before, cpu_jiffies())
                issuing = Issuing(base, token, partner_ids)
                busy, busy_errors = probe(base, LOAD_SECONDS, start_in=3.0, during=issuing)
        finally:
            removed = remove_issued(url)
    pdf.shutdown()

    issue_ms, plain_ms = statistics.median(issued) * 1000, statistics.median(plain) * 1000
    issue_ratio = issue_ms / plain_ms
    layout = cpus.split(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    idle_p99, busy_p99 = percentile(idle, 99), percentile(busy, 99)
    health_ratio = busy_p99 / idle_p99
    done = sum(issuing.statuses.values())
    other = {status: n for status, n in issuing.statuses.items() if status != 200}
    print(
        f"\n[{backend}] server workers 1, render workers 2 (the defaults); {KIND}.{LANGUAGE}, {pages} pages; "
        f"{os.cpu_count()} cores"
    )
    if layout is not None:  # what `accord serve` does by default (ACCORD_CPU_LAYOUT), unless another one runs here
        print(f"  CPU layout: {layout.describe()}")
    if backend == "sqlite":
        print("  (SQLite is enough here: an issue's few small writes hardly show beside its render)")
    print(f"  issue through the server      median {issue_ms:7.1f} ms   (of {ISSUES}; min {min(issued) * 1000:.0f} ms)")
    print(f"  plain WeasyPrint, same HTML   median {plain_ms:7.1f} ms   (of {ISSUES}; min {min(plain) * 1000:.0f} ms)")
    print(
        f"  issue / plain {issue_ratio:.3f}           "
        f"target <= {TARGET_ISSUE_RATIO}: {verdict(issue_ratio <= TARGET_ISSUE_RATIO)}"
    )
    print(f"  GET /healthz every {PROBE_INTERVAL * 1000:.0f} ms from its own process:")
    print(
        f"    idle                        p50 {percentile(idle, 50):6.1f} ms   p99 {idle_p99:6.1f} ms   "
        f"({len(idle)} in {IDLE_SECONDS:.0f} s, errors {idle_errors})"
    )
    print(
        f"    while {ISSUERS} issue at once      p50 {percentile(busy, 50):6.1f} ms   p99 {busy_p99:6.1f} ms   "
        f"({len(busy)} in {LOAD_SECONDS:.0f} s, errors {busy_errors})"
    )
    print(
        f"    meanwhile {done} issued ({done / issuing.seconds:.1f}/s), other answers {other or 'none'}, "
        f"issue p50 {percentile(issuing.latencies, 50):.0f} ms, p99 {percentile(issuing.latencies, 99):.0f} ms"
    )
    print(
        f"  healthz p99 busy / idle {health_ratio:.2f}   "
        f"target <= {TARGET_HEALTHZ_RATIO:g}: {verdict(health_ratio <= TARGET_HEALTHZ_RATIO)}"
    )
    print(f"  the machine's CPUs were {machine_busy:.0%} busy during the idle probe (server and prober alone: ~15 %)")
    if machine_busy > QUIET_CPU:
        print("  (other work was running on this machine: the idle p99, and so the healthz ratio, is not reliable)")
    print(f"  ({removed} issued PDFs removed from {ARCHIVE}; run took {time.monotonic() - began:.0f} s)")
    name = f"memoranda ({backend})"
    report_target(
        name, f"issue ÷ plain WeasyPrint ({pages} pages)", f"{issue_ratio:.3f} ({issue_ms:.0f} ÷ {plain_ms:.0f} ms)",
        f"<= {TARGET_ISSUE_RATIO}", issue_ratio <= TARGET_ISSUE_RATIO,
    )  # fmt: skip
    report_target(
        name, f"/healthz p99 while {ISSUERS} issue ÷ idle", f"{health_ratio:.2f} ({busy_p99:.1f} ÷ {idle_p99:.1f} ms)",
        f"<= {TARGET_HEALTHZ_RATIO:g}", health_ratio <= TARGET_HEALTHZ_RATIO,
    )  # fmt: skip


if __name__ == "__main__":
    for backend in sys.argv[1:] or ["sqlite"]:
        run(backend)
