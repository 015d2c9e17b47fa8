"""Crash safety: `accord serve` is killed with SIGKILL (its whole process group: no shutdown, no clean-up) in
the middle of a burst of pledges and memorandum issues, then started again on the same database and archive.

Every request answered with success is in the database as it was answered, with its audit entry; the archive
holds only whole files under their SHA-256, one for every issued memorandum (a temporary `.incoming-` file a
kill may leave is never taken for a document); the audit chain verifies; no need is over-committed; and the
restarted server takes pledges and issues memoranda again.
"""

import hashlib
import itertools
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from service.audit import AuditEntry, verify_chain
from service.db import utcnow
from service.emergencies import service as logistics
from service.emergencies.coverage import pledged_total
from service.emergencies.models import EmergencyCreate, Need, NeedCreate, Pledge, PledgeStatus
from service.memoranda import archive
from service.memoranda.models import Memorandum, MemorandumStatus
from service.partners.models import Organisation
from tests.bulletins.build import bearer
from tests.deploy.harness import AppProcess, launch, ready, wait_until
from tests.factories import make_partner, make_user
from tests.memoranda.build import create_body
from tests.test_browser import in_database

pytestmark = pytest.mark.slow

PARTNERS = 4
SMALL_NEED = 40  # fills up during the burst: later pledges at it are refused (409)
PLEDGE_THREADS = 3
MEMORANDUM_THREADS = 2
KILL_AFTER_PLEDGES, KILL_AFTER_ISSUES = 40, 1  # then killed while another issue is on its way
GONE = httpx.TransportError  # the server is gone: the connection refused, or cut off before the answer


@dataclass
class World:
    coordinator: dict[str, str]
    reps: list[dict[str, str]]
    partners: list[Organisation]
    needs: list[int]  # the small need, then one with room for every pledge


def world(session: Session) -> World:
    coordinator = make_user(session, "coordinator")
    partners = [make_partner(session) for _ in range(PARTNERS)]
    reps = [bearer(session, make_user(session, "partner", organisation=org)) for org in partners]
    emergency = logistics.declare(
        session=session,
        actor=coordinator,
        data=EmergencyCreate(title="Земетресение", kind="earthquake", area="Перник", severity="severe"),
    )
    needs = [
        logistics.add_need(
            session=session,
            actor=coordinator,
            emergency=emergency,
            data=NeedCreate(item_name=item, sector="shelter", unit="pcs", quantity=quantity, deliver_to="Стадиона"),
            open_now=True,
        ).id
        for item, quantity in (("Одеяла", SMALL_NEED), ("Бутилирана вода", 10**6))
    ]
    return World(bearer(session, coordinator), reps, partners, needs)


@dataclass
class Burst:
    """What the clients were answered while the server ran: success answers with what they returned."""

    pledges: dict[int, dict] = field(default_factory=dict)  # id: the 201 answer
    refused: int = 0  # 409: the need had no room
    drafts: set[int] = field(default_factory=set)
    issued: dict[int, dict] = field(default_factory=dict)  # id: the 200 answer
    unexpected: list[str] = field(default_factory=list)
    cut_off: int = 0  # requests sent that never got their answer (sent after the kill: refused, not counted)
    issuing: int = 0  # issue requests on their way now
    lock: threading.Lock = field(default_factory=threading.Lock)

    def gone(self, error: httpx.TransportError) -> None:
        if not isinstance(error, httpx.ConnectError):
            with self.lock:
                self.cut_off += 1


def pledger(base_url: str, world: World, n: int, burst: Burst, stop: threading.Event) -> None:
    """A partner pledging 1-3 pcs at the two needs in turn until the server is gone."""
    deliver_by = (utcnow() + timedelta(days=3)).isoformat()
    with httpx.Client(base_url=base_url, timeout=60, headers=world.reps[n % PARTNERS]) as client:
        for i in itertools.count():
            if stop.is_set():
                return
            need = world.needs[i % 2]
            try:
                answer = client.post(
                    f"/api/v1/needs/{need}/pledges", json={"quantity": 1 + (n + i) % 3, "deliver_by": deliver_by}
                )
            except GONE as error:
                burst.gone(error)
                return
            with burst.lock:
                if answer.status_code == 201:
                    burst.pledges[answer.json()["id"]] = answer.json()
                elif answer.status_code == 409 and need == world.needs[0]:
                    burst.refused += 1
                else:
                    burst.unexpected.append(f"pledge: {answer.status_code} {answer.text[:300]}")
            time.sleep(0.02)  # a steady stream, leaving the two cores room to render the memoranda


def issuer(base_url: str, world: World, n: int, burst: Burst, stop: threading.Event) -> None:
    """A coordinator drafting memoranda and issuing each until the server is gone."""
    with httpx.Client(base_url=base_url, timeout=120, headers=world.coordinator) as client:
        while not stop.is_set():
            try:
                body = create_body(world.partners[n % PARTNERS : n % PARTNERS + 1])
                draft = client.post("/api/v1/memoranda", json=body)
                if draft.status_code != 201:
                    burst.unexpected.append(f"draft: {draft.status_code} {draft.text[:300]}")
                    return
                with burst.lock:
                    burst.drafts.add(draft.json()["id"])
                    burst.issuing += 1
                try:
                    issued = client.post(f"/api/v1/memoranda/{draft.json()['id']}/issue")
                finally:
                    with burst.lock:
                        burst.issuing -= 1
            except GONE as error:
                burst.gone(error)
                return
            with burst.lock:
                if issued.status_code == 200:
                    burst.issued[issued.json()["id"]] = issued.json()
                else:
                    burst.unexpected.append(f"issue: {issued.status_code} {issued.text[:300]}")


def said(answer: httpx.Response, server: AppProcess) -> str:
    """An unexpected answer, with the end of the server's log that may explain it."""
    return f"{answer.status_code} {answer.text[:500]}\n{server.log_text()[-4000:]}"


def archive_files(root: Path) -> tuple[dict[str, Path], list[Path]]:
    """The archive's documents by the name they are stored under, and the temporary files a kill left."""
    documents, temporary = {}, []
    for path in root.rglob("*"):
        if path.is_file():
            if path.name.startswith(".incoming-"):
                temporary.append(path)
            else:
                documents[path.name.removesuffix(".pdf")] = path
    return documents, temporary


def test_a_killed_server_keeps_every_answered_write_and_no_half_file(database_url, engine, smtp_server, tmp_path):
    controller, _ = smtp_server
    cast = in_database(database_url, world)
    store = tmp_path / "memoranda"
    postgres = engine.dialect.name == "postgresql"
    env = {
        "ACCORD_MEMORANDA_DIR": str(store),
        "ACCORD_RUN_SCHEDULER": "true",  # as in production: the jobs run (and are killed) too
        "ACCORD_OUTBOX_INTERVAL_SECONDS": "1",
        "ACCORD_SMTP_HOST": controller.hostname,
        "ACCORD_SMTP_PORT": str(controller.port),
        "ACCORD_PDF_WARM_UP": "true",
        "ACCORD_PDF_RENDER_WORKERS": "1",
    }
    workers = 2 if postgres else 1  # SQLite is the single-process default

    def serve(log: str) -> AppProcess:
        app = launch(database_url, tmp_path / log, workers=workers, own_group=True, **env)
        ready(app)
        return app

    server = serve("first.log")
    burst, stop = Burst(), threading.Event()
    try:
        threads = [
            threading.Thread(target=pledger, args=(server.url, cast, n, burst, stop)) for n in range(PLEDGE_THREADS)
        ] + [
            threading.Thread(target=issuer, args=(server.url, cast, n, burst, stop)) for n in range(MEMORANDUM_THREADS)
        ]
        for thread in threads:
            thread.start()

        def time_to_kill() -> bool:
            with burst.lock:
                return (
                    len(burst.pledges) >= KILL_AFTER_PLEDGES
                    and len(burst.issued) >= KILL_AFTER_ISSUES
                    and burst.issuing > 0
                )

        wait_until(time_to_kill, 120, "burst far enough to kill the server in")
        server.kill()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        stop.set()
        server.stop()

    assert not burst.unexpected, burst.unexpected
    assert burst.cut_off >= 1  # killed in the middle: requests on their way never got their answers
    assert burst.refused >= 1  # the small need filled up during the burst

    # A kill between a document's write and its rename leaves a temporary file beside the documents. Should
    # this kill not have hit that moment, one is left as it would be (half of an issued PDF): it must never
    # be taken for a document.
    first = archive.path_of(next(iter(burst.issued.values()))["sha256"], store)
    half = first.read_bytes()[: first.stat().st_size // 2]
    (first.parent / ".incoming-killed.pdf").write_bytes(half)

    restarted = serve("restarted.log")
    try:
        with Session(engine) as session:
            # Every answered pledge is there as answered, with its audit entry; nothing is half there.
            pledges = {p.id: p for p in session.exec(select(Pledge))}
            assert set(burst.pledges) <= set(pledges)
            for pledge_id, answer in burst.pledges.items():
                pledge = pledges[pledge_id]
                assert pledge.status == PledgeStatus.offered == answer["status"]
                assert (pledge.need_id, pledge.quantity) == (answer["need_id"], Decimal(str(answer["quantity"])))
            audited = set(session.exec(select(AuditEntry.entity_id).where(AuditEntry.action == "pledge.create")))
            assert audited == set(pledges)
            for need_id in cast.needs:
                total = sum((p.quantity for p in pledges.values() if p.need_id == need_id), Decimal(0))
                assert pledged_total(session=session, need_id=need_id) == total <= session.get(Need, need_id).quantity

            # Every answered memorandum is there; every issued one has its whole file, under its SHA-256.
            memoranda = {m.id: m for m in session.exec(select(Memorandum))}
            assert burst.drafts <= set(memoranda)
            for memorandum_id, answer in burst.issued.items():
                memorandum = memoranda[memorandum_id]
                assert memorandum.status == MemorandumStatus.issued == answer["status"]
                assert (memorandum.sha256, memorandum.verification_code) == (
                    answer["sha256"],
                    answer["verification_code"],
                )
            issued = {m.id: m.sha256 for m in memoranda.values() if m.status == MemorandumStatus.issued}
            audited = set(session.exec(select(AuditEntry.entity_id).where(AuditEntry.action == "memorandum.issue")))
            assert audited == set(issued)
            assert all(m.sha256 is None for m in memoranda.values() if m.status == MemorandumStatus.draft)

            checked, broken = verify_chain(session)
            assert broken is None, f"the audit chain breaks after {checked} rows at entry {broken.id}"

        documents, temporary = archive_files(store)
        for name, path in documents.items():
            data = path.read_bytes()
            assert hashlib.sha256(data).hexdigest() == name, f"{path} is not the file its name says"
            assert path == archive.path_of(name, store)
            assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
        assert set(issued.values()) <= set(documents)
        assert not {path.name for path in temporary} & {f"{sha}.pdf" for sha in issued.values()}

        assert temporary  # the one left above, at least

        # The restarted server serves every issued document and vouches for it, not for the half file; and it
        # goes on taking pledges and issuing memoranda.
        with httpx.Client(base_url=restarted.url, timeout=120, headers=cast.coordinator) as client:
            for memorandum_id, sha256 in issued.items():
                pdf = client.get(f"/api/v1/memoranda/{memorandum_id}/pdf?variant=issued")
                assert pdf.status_code == 200 and hashlib.sha256(pdf.content).hexdigest() == sha256
                genuine = client.get(f"/verify/{sha256}", headers={"Accept": "application/json"})
                assert genuine.status_code == 200 and genuine.json()["genuine"] is True, genuine.text
            unknown = client.get(f"/verify/{hashlib.sha256(half).hexdigest()}", headers={"Accept": "application/json"})
            assert unknown.status_code == 404 and unknown.json()["genuine"] is False
            pledge = client.post(
                f"/api/v1/needs/{cast.needs[1]}/pledges",
                headers=cast.reps[0],
                json={"quantity": 2, "deliver_by": (utcnow() + timedelta(days=3)).isoformat()},
            )
            assert pledge.status_code == 201, said(pledge, restarted)
            draft = client.post("/api/v1/memoranda", json=create_body(cast.partners[:1]))
            assert draft.status_code == 201, said(draft, restarted)
            again = client.post(f"/api/v1/memoranda/{draft.json()['id']}/issue")
            assert again.status_code == 200, said(again, restarted)
            assert archive.load(again.json()["sha256"], store)
        with Session(engine) as session:
            checked, broken = verify_chain(session)
            assert broken is None, f"after the restart the chain breaks after {checked} rows at entry {broken.id}"
    finally:
        restarted.stop()
