"""`accord backup` and `accord restore`, run as an operator would (real processes) on each backend: a restore into
an empty installation gives back every row of every table and every file; a damaged or altered archive, or an
installation that already has data, is refused with nothing changed; a backup taken while pledges pour in is one
consistent snapshot; an archive of an older schema is migrated forward.
"""

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlmodel import Session, func, select

from service import backup
from service.audit import AuditEntry, verify_chain
from service.config import settings
from service.db import alembic_config, check_migrated, create_db_engine, write_engine
from service.emergencies.models import Pledge
from service.memoranda import archive
from service.memoranda.models import Memorandum, MemorandumParty
from service.partners.models import Organisation
from service.scheduler import SchedulerRunner
from tests.bulletins.build import Officers
from tests.conftest import PROJECT, _pg_admin, accord_env, pg_url
from tests.consultations.build import decided, tiny_pdf
from tests.emergencies.build import Logistics
from tests.factories import make_partner, make_user
from tests.memoranda.world import Memoranda


@dataclass
class Site:
    """A database and the folders beside it, and `accord` run on them as a separate process."""

    database_url: str
    memoranda: Path
    attachments: Path
    data: Path

    def accord(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        env = accord_env(
            self.database_url,
            ACCORD_MEMORANDA_DIR=str(self.memoranda),
            ACCORD_ATTACHMENTS_DIR=str(self.attachments),
            ACCORD_DATA_DIR=str(self.data),
        )
        return subprocess.run(
            [sys.executable, "-m", "service", *args],
            cwd=PROJECT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def installation(self) -> backup.Installation:
        """The same place as the service describes an installation (for calling `service.backup` directly)."""
        return backup.Installation(
            database_url=self.database_url,
            memoranda_dir=self.memoranda,
            attachments_dir=self.attachments,
            data_dir=self.data,
        )

    def files(self) -> dict[str, str]:
        """Every file in both folders, by its path there, with its SHA-256."""
        return {
            f"{name}/{path.relative_to(folder).as_posix()}": hashlib.sha256(path.read_bytes()).hexdigest()
            for name, folder in (("memoranda", self.memoranda), ("attachments", self.attachments))
            if folder.exists()
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }


def tables(database_url: str) -> dict[str, tuple[list[str], list[tuple]]]:
    """Every table in the database (whatever made it): its columns and all its rows, in a stable order."""
    engine = create_db_engine(database_url)
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine)
        with engine.connect() as conn:
            return {
                name: ([c.name for c in table.columns], sorted(map(tuple, conn.execute(sa.select(table))), key=repr))
                for name, table in sorted(metadata.tables.items())
            }
    finally:
        engine.dispose()


def one_line(text: str) -> str:
    return " ".join(text.split())


def refused(result: subprocess.CompletedProcess) -> str:
    """The refusal's message, after checking it was one: an exit code and words, not a traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert "Restore refused" in result.stderr
    return one_line(result.stderr)


@pytest.fixture
def source(database_url: str, tmp_path: Path) -> Site:
    """The test's database, with the folders the in-process service functions store files in."""
    return Site(database_url, settings.memoranda_dir, settings.effective_attachments_dir, tmp_path / "data")


@pytest.fixture
def new_installation(database_factory, tmp_path: Path) -> Iterator[Callable[..., Site]]:
    """Makes empty installations: a new database (migrated and empty, or with `bare` not even the schema) and
    folders that do not exist yet."""
    made: list[tuple[str, bool]] = []

    def make(*, bare: bool = False) -> Site:
        if not bare:
            url = database_factory.new_url()
        elif database_factory.backend == "sqlite":
            url = f"sqlite:///{tmp_path / f'bare-{uuid.uuid4().hex[:8]}.db'}"
        else:
            name = f"bare_{uuid.uuid4().hex[:12]}"
            _pg_admin(f'CREATE DATABASE "{name}"')
            url = pg_url(name)
        made.append((url, bare))
        root = tmp_path / f"installation-{len(made)}"
        return Site(url, root / "memoranda", root / "attachments", root / "data")

    yield make
    for url, bare in made:
        if bare and database_factory.backend == "postgresql":
            _pg_admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        elif not bare:
            database_factory.drop(url)


def run_scheduler_once(engine) -> None:
    """The real scheduler leads once (storing its jobs in `apscheduler_jobs`, running the due ones) and stops."""
    runner = SchedulerRunner(engine)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while not runner.is_leader:
            assert time.monotonic() < deadline, "the scheduler did not take the lead"
            time.sleep(0.05)
    finally:
        runner.stop()


def build_everything(engine, session: Session, client) -> dict[str, list[str]]:
    """Data in every domain, through the service and the API, with files in both folders and a long audit
    chain; returns the SHA-256 of the files the database names."""
    coordinator = make_user(session, "coordinator")
    partners = [make_partner(session, actor=coordinator) for _ in range(6)]
    logistics = Logistics(engine, coordinator)
    need = logistics.need(logistics.emergency(), quantity=500)
    states = ("delivered", "partial", "accepted", "offered", "declined", "withdrawn")
    for partner, state in zip(partners, states, strict=True):
        logistics.pledge(need, partner.id, state, quantity=12)
    logistics.offer(partners[0].id)
    memorandum_id = Memoranda(engine, coordinator).active(partners[:2], final=True, render=True)
    officers = Officers(client, session)
    officers.correct(officers.published()["id"], body="Мостът е **затворен** до 18:00 ч.")
    officers.fact_check()
    consultation = decided(session, coordinator=coordinator)
    session.close()  # no transaction of the test's stays open while the scheduler writes
    run_scheduler_once(engine)

    with Session(engine) as s:
        memorandum = s.get(Memorandum, memorandum_id)
        scans = s.exec(select(MemorandumParty.scan_sha256).where(MemorandumParty.scan_sha256.is_not(None))).all()
    attachments = [sub.attachment_sha256 for sub in consultation.submissions.values() if sub.attachment_sha256]
    assert memorandum.sha256 and memorandum.signed_sha256 and scans and len(attachments) == 2
    return {"memoranda": [memorandum.sha256, memorandum.signed_sha256, *scans], "attachments": attachments}


def test_a_restore_gives_back_every_row_of_every_table_and_every_file(
    source, new_installation, engine, session, client
):
    stored = build_everything(engine, session, client)
    before = tables(source.database_url)
    assert before["apscheduler_jobs"][1] and before["alembic_version"][1]
    assert len(before["audit_entry"][1]) > 50

    made = source.accord("backup")  # to the default place: backups/ in the data directory
    assert made.returncode == 0, made.stderr
    (path,) = (source.data / "backups").iterdir()  # one archive, nothing half-written or temporary beside it
    assert f"Backup written to {path}" in made.stdout
    assert path.name.startswith("accord-") and path.name.endswith("Z.tar")
    assert path.stat().st_mode & 0o777 == 0o600  # personal data: its owner's only
    files = source.files()
    counts = {f: sum(name.startswith(f"{f}/") for name in files) for f in ("memoranda", "attachments")}
    assert (
        f"{counts['memoranda']} files of the memoranda folder, {counts['attachments']} of the attachments"
        in made.stdout
    )
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        names = tar.getnames()
    assert manifest["backend"] == engine.dialect.name
    assert manifest["alembic_revision"] == before["alembic_version"][1][0][0]
    assert {m["name"] for m in manifest["members"]} == set(names) - {"manifest.json"}
    assert files == {m["name"]: m["sha256"] for m in manifest["members"] if not m["name"].startswith("database/")}

    target = new_installation()
    restored = target.accord("restore", str(path))
    assert restored.returncode == 0, restored.stderr
    assert "Restored from" in restored.stdout and "The schema was migrated" not in restored.stdout

    assert tables(source.database_url) == before  # the backup changed nothing
    assert tables(target.database_url) == before  # every table, every column, every row
    assert target.files() == files
    for folder, digests in stored.items():  # the files the database names are there and intact
        for digest in digests:
            assert archive.load(digest, getattr(target, folder))  # it checks the content against the name
    assert not list(target.data.glob(".accord-restore-*"))  # the unpacked copy is gone

    restored_engine = create_db_engine(target.database_url)
    try:
        check_migrated(restored_engine)
        with Session(write_engine(restored_engine)) as s:
            assert verify_chain(session=s) == (len(before["audit_entry"][1]), None)
            # The restored installation goes on: new ids follow the restored ones, the chain continues.
            newest = s.exec(select(func.max(Organisation.id))).one()
            assert make_partner(s).id > newest
            checked, bad = verify_chain(session=s)
            assert bad is None and checked == len(before["audit_entry"][1]) + 1
    finally:
        restored_engine.dispose()

    again = refused(target.accord("restore", str(path)))
    assert "only into an empty installation" in again and "has data (in audit_entry, " in again


def altered(path: Path, out: Path, *, flip_in: str | None = None, manifest=None, extra=None) -> Path:
    """A copy of the archive with one byte of a member changed, its manifest edited, or a member added."""
    if flip_in is not None:
        with tarfile.open(path) as tar:
            info = tar.getmember(flip_in)
        data = bytearray(path.read_bytes())
        data[info.offset_data + info.size // 2] ^= 0x01
        out.write_bytes(bytes(data))
        return out
    with tarfile.open(path) as old, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as new:
        for info in old:
            data = old.extractfile(info).read()
            if info.name == "manifest.json" and manifest is not None:
                data = manifest(data)
                info.size = len(data)
            new.addfile(info, io.BytesIO(data))
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            new.addfile(info, io.BytesIO(data))
    return out


def edit(change: Callable[[dict], None]) -> Callable[[bytes], bytes]:
    def edited(data: bytes) -> bytes:
        content = json.loads(data)
        change(content)
        return json.dumps(content).encode()

    return edited


@pytest.fixture
def small_backup(source: Site, session: Session, tmp_path: Path) -> dict[str, Path | str]:
    """An archive of a partner and one file in each folder; the names of its members."""
    make_partner(session)
    memorandum = archive.store(tiny_pdf() + b"% memorandum\n")
    attachment = archive.store(tiny_pdf() + b"% attachment\n", settings.effective_attachments_dir)
    session.close()
    made = source.accord("backup", str(tmp_path / "good.tar"))
    assert made.returncode == 0, made.stderr
    return {
        "path": tmp_path / "good.tar",
        "database": f"database/accord.{'sqlite3' if source.database_url.startswith('sqlite') else 'pgdump'}",
        "memorandum": f"memoranda/{memorandum[:2]}/{memorandum}.pdf",
        "attachment": f"attachments/{attachment[:2]}/{attachment}.pdf",
    }


def test_a_damaged_or_altered_archive_is_refused_and_changes_nothing(source, small_backup, new_installation, tmp_path):
    good, database = small_backup["path"], small_backup["database"]
    memorandum, attachment = small_backup["memorandum"], small_backup["attachment"]
    stranger = "memoranda/ab/ab" + "0" * 62 + ".pdf"

    def other_hash(content: dict) -> None:
        next(m for m in content["members"] if m["name"] == attachment)["sha256"] = "f" * 64

    def unlisted(content: dict) -> None:
        content["members"] = [m for m in content["members"] if m["name"] != memorandum]

    target = new_installation()
    empty = tables(target.database_url)

    def untouched(case: str) -> None:
        assert tables(target.database_url) == empty, case
        assert target.files() == {}, case
        assert not list(target.data.glob(".accord-restore-*")), case

    # Through the command, as an operator meets them.
    by_command = {
        "a byte of a memorandum": (altered(good, tmp_path / "1.tar", flip_in=memorandum), [memorandum]),
        "a byte of the database": (altered(good, tmp_path / "2.tar", flip_in=database), [database]),
        "a hash in the manifest": (altered(good, tmp_path / "3.tar", manifest=edit(other_hash)), [attachment]),
    }
    for case, (path, words) in by_command.items():
        message = refused(target.accord("restore", str(path)))
        assert all(word in message for word in words), (case, message)
        assert "does not match its manifest: it was damaged or altered" in message, (case, message)
        assert message.endswith("Nothing was restored."), (case, message)
        untouched(case)

    # The other alterations, through the function the command calls (a process each would only be slower).
    in_process = {
        "a member left out of the manifest": (
            altered(good, tmp_path / "4.tar", manifest=edit(unlisted)),
            [memorandum, "is in the archive but not in the manifest"],
        ),
        "a member added": (altered(good, tmp_path / "5.tar", extra={stranger: tiny_pdf()}), [stranger]),
        "a manifest that is not JSON": (
            altered(good, tmp_path / "6.tar", manifest=lambda data: data[:-5]),
            ["manifest.json is not valid"],
        ),
        "a member that no backup has": (altered(good, tmp_path / "7.tar", extra={"../escape": b"x"}), ["../escape"]),
        "not an archive at all": (tmp_path / "8.tar", ["is not a readable backup archive"]),
        "a schema newer than this version's": (
            altered(good, tmp_path / "9.tar", manifest=edit(lambda content: content.update(alembic_revision="9999"))),
            ["schema revision 9999, which this version of Crisis Accord does not know"],
        ),
    }
    (tmp_path / "8.tar").write_bytes(b"%PDF-1.7\n" * 1000)
    for case, (path, words) in in_process.items():
        with pytest.raises(backup.BackupError) as error:
            backup.restore(installation=target.installation(), archive=path)
        message = one_line(str(error.value))
        assert all(word in message for word in words), (case, message)
        assert message.endswith("Nothing was restored."), (case, message)
        untouched(case)
    assert not (target.data / "escape").exists()

    # The untouched archive restores into the same, still empty, installation.
    fine = target.accord("restore", str(good))
    assert fine.returncode == 0, fine.stderr
    assert target.files() == source.files()


def test_a_restore_into_a_database_in_use_is_refused(small_backup, new_installation):
    target = new_installation()
    empty = tables(target.database_url)
    engine = create_db_engine(target.database_url)
    try:
        with engine.connect() as conn:  # as a running app would hold one
            conn.execute(sa.text("SELECT 1"))
            message = refused(target.accord("restore", str(small_backup["path"])))
    finally:
        engine.dispose()
    assert "is in use" in message and "stop the app and the scheduler" in message
    assert message.endswith("Nothing was restored.")
    assert tables(target.database_url) == empty
    assert target.files() == {}


def test_a_restore_into_an_installation_with_data_is_refused(source, new_installation, session, tmp_path):
    make_partner(session, name="Сдружение „Архив“")
    archive.store(tiny_pdf() + b"% archived\n")
    session.close()
    made = source.accord("backup", str(tmp_path))  # a folder: the archive gets its default name there
    assert made.returncode == 0, made.stderr
    (path,) = tmp_path.glob("accord-*.tar")

    # A database with a row of data.
    target = new_installation()
    target_engine = create_db_engine(target.database_url)
    with Session(write_engine(target_engine)) as s:
        make_partner(s, name="Сдружение „Вече тук“")
    target_engine.dispose()
    with_data = tables(target.database_url)
    message = refused(target.accord("restore", str(path)))
    assert "has data (in audit_entry, organisation)" in message and "Nothing was restored" in message
    assert tables(target.database_url) == with_data
    assert target.files() == {}

    # Empty database, but a file already in the memoranda folder.
    target = new_installation()
    present = archive.store(b"%PDF-1.7\n% already here\n%%EOF\n", target.memoranda)
    empty = tables(target.database_url)
    message = refused(target.accord("restore", str(path)))
    assert f"the memoranda folder {target.memoranda} is not empty (1 stored files)" in message
    assert tables(target.database_url) == empty
    assert target.files() == {f"memoranda/{present[:2]}/{present}.pdf": present}

    # What is not stored data (the default memoranda folder's README) does not count, and stays.
    archive.path_of(present, target.memoranda).unlink()
    (target.memoranda / "README.md").write_text("The archive of generated memorandum PDFs.\n")
    done = target.accord("restore", str(path))
    assert done.returncode == 0, done.stderr
    assert (target.memoranda / "README.md").exists()
    assert tables(target.database_url) == tables(source.database_url)


def test_a_backup_taken_while_pledges_pour_in_is_one_consistent_snapshot(
    source, new_installation, engine, session, tmp_path
):
    coordinator = make_user(session, "coordinator")
    partners = [make_partner(session) for _ in range(3)]
    session.close()
    logistics = Logistics(engine, coordinator)
    need = logistics.need(logistics.emergency(), quantity=100_000)
    made: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def keep_pledging() -> None:
        try:
            while not stop.is_set():
                made.append(logistics.pledge(need, partners[len(made) % 3].id, "accepted", quantity=1))
        except BaseException as error:
            errors.append(error)

    writer = threading.Thread(target=keep_pledging)
    writer.start()
    try:
        while len(made) < 3 and writer.is_alive():
            time.sleep(0.05)
        at_start = len(made)
        backed_up = source.accord("backup", str(tmp_path / "busy.tar"))
        at_end = len(made)
    finally:
        stop.set()
        writer.join(60)
    assert not errors, errors
    assert backed_up.returncode == 0, backed_up.stderr
    assert at_end > at_start, "no pledge was made while the backup ran"

    target = new_installation()
    restored = target.accord("restore", str(tmp_path / "busy.tar"))
    assert restored.returncode == 0, restored.stderr
    restored_engine = create_db_engine(target.database_url)
    try:
        with Session(restored_engine) as s:
            checked, bad = verify_chain(session=s)
            assert bad is None and checked == s.exec(select(func.count()).select_from(AuditEntry)).one()
            pledges = s.exec(select(Pledge).order_by(Pledge.id)).all()
            ids = [p.id for p in pledges]
            # One moment of the writer's sequence: all it had made by then (at least what it made before the backup
            # began), in order, and nothing after; only the newest pledge may be between its offer and acceptance.
            assert len(ids) >= at_start and ids == made[: len(ids)]
            accepted = [p.id for p in pledges if p.status == "accepted" and p.accepted_quantity == 1]
            assert accepted in (ids, ids[:-1]), [(p.id, p.status) for p in pledges[-3:]]
            # The audit log says exactly what the tables hold.
            for action, expected in (("pledge.create", ids), ("pledge.accept", accepted)):
                audited = s.exec(select(AuditEntry.entity_id).where(AuditEntry.action == action)).all()
                assert sorted(audited) == expected, action
    finally:
        restored_engine.dispose()


def test_an_archive_of_an_older_schema_is_migrated_forward(new_installation, tmp_path):
    old = new_installation()
    engine = create_db_engine(old.database_url)
    with Session(write_engine(engine)) as s:
        make_partner(s, name="Сдружение „Отпреди“")
    engine.dispose()
    script = ScriptDirectory.from_config(alembic_config(old.database_url))
    head = script.get_current_head()
    previous = script.get_revision(head).down_revision
    command.downgrade(alembic_config(old.database_url), previous)
    made = old.accord("backup", str(tmp_path / "old.tar"))
    assert made.returncode == 0, made.stderr
    assert f"schema revision {previous}" in made.stdout

    target = new_installation(bare=True)  # not even the schema: a database just created
    restored = target.accord("restore", str(tmp_path / "old.tar"))
    assert restored.returncode == 0, restored.stderr
    assert f"The schema was migrated from {previous} to {head}." in restored.stdout
    engine = create_db_engine(target.database_url)
    try:
        check_migrated(engine)
        with Session(engine) as s:
            assert s.exec(select(Organisation.name)).all() == ["Сдружение „Отпреди“"]
            assert verify_chain(session=s)[1] is None
    finally:
        engine.dispose()


def test_backup_refuses_a_database_without_schema(new_installation, tmp_path):
    bare = new_installation(bare=True)
    if bare.database_url.startswith("sqlite"):
        missing = bare.accord("backup", str(tmp_path / "none.tar"))
        assert missing.returncode == 1 and "does not exist" in missing.stderr
        sa.create_engine(bare.database_url).connect().close()  # an empty file
    made = bare.accord("backup", str(tmp_path / "none.tar"))
    assert made.returncode == 1 and "Traceback" not in made.stderr
    assert "no schema yet (run `accord migrate`)" in one_line(made.stderr)
    assert list(tmp_path.glob("*.tar")) == [] and list(tmp_path.glob(".*partial")) == []


def test_a_missing_postgresql_tool_is_named_with_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(backup.ToolMissing) as missing:
        backup.pg_tool("pg_dump", 15, search=str(tmp_path / "*" / "bin"))
    assert "pg_dump was not found" in str(missing.value)
    assert "apt-get install postgresql-client-15" in str(missing.value)
    # Where several versions are installed, the server's own comes first, else the newest.
    for version in ("13", "15", "16"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "pg_restore").write_text("")
    assert backup.pg_tool("pg_restore", 15, search=str(tmp_path / "*" / "bin")) == str(tmp_path / "15/bin/pg_restore")
    assert backup.pg_tool("pg_restore", 17, search=str(tmp_path / "*" / "bin")) == str(tmp_path / "16/bin/pg_restore")
