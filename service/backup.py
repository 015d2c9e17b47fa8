"""Backups: one archive holding the database, the memoranda archive and the consultations' attachments, with a
manifest of SHA-256 hashes; and the restore of such an archive into an empty installation.

The database is copied first, then the files. A file is stored before the row that names it commits and is
never removed, so every file the copied database refers to is already there; files stored after the copy
come along as harmless extras.
"""

import contextlib
import errno
import glob
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from service.config import settings
from service.db import DatabaseNotMigrated, alembic_config, check_migrated, create_db_engine, migrate, utcnow

FORMAT = "crisis-accord-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE_MEMBERS = {"sqlite": "database/accord.sqlite3", "postgresql": "database/accord.pgdump"}
FOLDERS = ("memoranda", "attachments")
# What the service stores in those folders: `<first two hex digits>/<SHA-256>.pdf` (service.memoranda.archive).
# Nothing else there is data (the default memoranda folder holds a README), so nothing else is backed up.
_STORED_FILE = re.compile(r"([0-9a-f]{2})/\1[0-9a-f]{62}\.pdf\Z")
# Tables that hold no one's data: the schema's revision, the stored schedule, the scheduler's lease.
BOOKKEEPING_TABLES = frozenset({"alembic_version", "apscheduler_jobs", "scheduler_lock"})
PG_BIN_DIRS = "/usr/lib/postgresql/*/bin"  # Debian keeps each major version's tools here
# Connection settings a PostgreSQL URL may carry in its query, as the client tools read them.
_LIBPQ_ENV = {
    "host": "PGHOST", "port": "PGPORT", "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME", "target_session_attrs": "PGTARGETSESSIONATTRS",
}  # fmt: skip
CHUNK = 1024 * 1024


class BackupError(RuntimeError):
    """A backup or restore that cannot go ahead; the message says why and what to do."""


class ArchiveRejected(BackupError):
    """The archive is damaged, altered or not a backup at all: nothing is restored from it."""


class InstallationNotEmpty(BackupError):
    """The restore's target already holds data, which a restore would mix with or overwrite."""


class ToolMissing(BackupError):
    """A PostgreSQL client tool (pg_dump, pg_restore) is not installed."""


@dataclass(frozen=True)
class Installation:
    """Where an installation keeps its data: the database, the two file folders, and its data directory
    (default home of the backups, and where a restore unpacks before it changes anything)."""

    database_url: str
    memoranda_dir: Path
    attachments_dir: Path
    data_dir: Path

    @classmethod
    def from_settings(cls) -> "Installation":
        return cls(
            database_url=settings.effective_database_url,
            memoranda_dir=Path(settings.memoranda_dir),
            attachments_dir=settings.effective_attachments_dir,
            data_dir=Path(settings.data_dir),
        )

    def folder(self, name: str) -> Path:
        return {"memoranda": self.memoranda_dir, "attachments": self.attachments_dir}[name]


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    sha256: str


@dataclass
class Manifest:
    created_at: str
    backend: str
    alembic_revision: str
    members: list[Member] = field(default_factory=list)

    def to_json(self) -> bytes:
        content = {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}
        return json.dumps(content, indent=1, ensure_ascii=False).encode()

    @classmethod
    def parse(cls, data: bytes) -> "Manifest":
        """The manifest read back, refusing anything `to_json` would not have written."""
        try:
            content = json.loads(data)
            if content.get("format") != FORMAT:
                raise ArchiveRejected(f"{MANIFEST} is not the manifest of a Crisis Accord backup.")
            if content.get("format_version") != FORMAT_VERSION:
                raise ArchiveRejected(
                    f"The archive has format version {content.get('format_version')!r}; this version reads "
                    f"{FORMAT_VERSION}. Restore it with the version of Crisis Accord that made it."
                )
            manifest = cls(
                created_at=_text(content["created_at"]),
                backend=_text(content["backend"]),
                alembic_revision=_text(content["alembic_revision"]),
                members=[
                    Member(name=_text(m["name"]), size=_count(m["size"]), sha256=_text(m["sha256"]))
                    for m in content["members"]
                ],
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ArchiveRejected(f"{MANIFEST} is not valid ({error!r}); the archive was altered or damaged.") from None
        if manifest.backend not in DATABASE_MEMBERS:
            raise ArchiveRejected(f"{MANIFEST} names an unknown database backend {manifest.backend!r}.")
        names = [m.name for m in manifest.members]
        if len(set(names)) != len(names):
            raise ArchiveRejected(f"{MANIFEST} lists a member twice; the archive was altered.")
        if manifest.database_member not in names:
            raise ArchiveRejected(f"{MANIFEST} does not list the database ({manifest.database_member}).")
        return manifest

    @property
    def database_member(self) -> str:
        return DATABASE_MEMBERS[self.backend]

    def summary(self) -> str:
        """One line: what the archive holds."""
        database = next(m for m in self.members if m.name == self.database_member)
        counts = {folder: sum(m.name.startswith(f"{folder}/") for m in self.members) for folder in FOLDERS}
        total = sum(m.size for m in self.members)
        label = "SQLite" if self.backend == "sqlite" else "PostgreSQL"
        return (
            f"{label} database at schema revision {self.alembic_revision} ({_size(database.size)}), "
            f"{counts['memoranda']} files of the memoranda folder, {counts['attachments']} of the attachments folder; "
            f"{_size(total)} in all."
        )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, found {value!r}")
    return value


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"expected a size, found {value!r}")
    return value


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@dataclass
class Backup:
    path: Path
    manifest: Manifest
    damaged: list[str]  # stored files whose content no longer matches their name (backed up as they are)


@dataclass
class Restored:
    manifest: Manifest
    migrated_to: str | None  # the head revision, when the archive's schema was older


# --- backup ----------------------------------------------------------------------------------------------


def default_path(data_dir: Path) -> Path:
    return data_dir / "backups" / f"accord-{utcnow():%Y%m%dT%H%M%SZ}.tar"


def create(*, installation: Installation, path: Path | None = None) -> Backup:
    """Writes one archive (to `path`, a folder for it, or the default place) of the database and both folders.

    The archive appears whole or not at all: it is written under a temporary name beside its final one,
    flushed to disk and renamed. It holds personal data, so only its owner may read it.
    """
    target = _archive_path(path, installation.data_dir)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    backend = _backend(installation.database_url)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".accord-backup-") as work:
        dump = Path(work) / "database"
        if backend == "sqlite":
            revision = _dump_sqlite(installation.database_url, dump)
        else:
            revision = _dump_postgresql(installation.database_url, dump)
        manifest = Manifest(
            created_at=utcnow().isoformat(timespec="seconds"), backend=backend, alembic_revision=revision
        )
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as file:
                damaged = _write_archive(file, manifest, dump, installation)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    _fsync_directory(target.parent)
    return Backup(path=target, manifest=manifest, damaged=damaged)


def _archive_path(path: Path | None, data_dir: Path) -> Path:
    if path is None:
        return default_path(data_dir)
    if path.is_dir():
        return path / default_path(data_dir).name
    return path


def _write_archive(file: IO[bytes], manifest: Manifest, dump: Path, installation: Installation) -> list[str]:
    """The members, each hashed as it is written, then the manifest of those hashes (last, so it describes
    exactly the bytes in the archive)."""
    damaged = []
    with tarfile.open(fileobj=file, mode="w", format=tarfile.PAX_FORMAT) as tar:
        manifest.members.append(_add(tar, manifest.database_member, dump))
        for folder in FOLDERS:
            root = installation.folder(folder)
            for relative in stored_files(root):
                member = _add(tar, f"{folder}/{relative}", root / relative)
                manifest.members.append(member)
                if not relative.endswith(f"/{member.sha256}.pdf"):
                    damaged.append(str(root / relative))
        data = manifest.to_json()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime, info.mode = len(data), int(utcnow().timestamp()), 0o600
        tar.addfile(info, io.BytesIO(data))
    return damaged


class _HashingReader:
    """A file read through, hashing what tarfile copies out of it."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.digest.update(data)
        return data


def _add(tar: tarfile.TarFile, name: str, source: Path) -> Member:
    with source.open("rb") as file:
        stat = os.fstat(file.fileno())
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o600
        reader = _HashingReader(file)
        tar.addfile(info, reader)
    return Member(name=name, size=info.size, sha256=reader.digest.hexdigest())


def stored_files(root: Path) -> list[str]:
    """The files the service stored below `root`, as `ab/<sha256>.pdf` (half-written temporaries left out)."""
    if not root.is_dir():
        return []
    found = (path.relative_to(root).as_posix() for path in root.glob("??/*.pdf") if path.is_file())
    return sorted(name for name in found if _STORED_FILE.match(name))


def _backend(url: str) -> str:
    name = make_url(url).get_backend_name()
    if name not in DATABASE_MEMBERS:
        raise BackupError(f"Backups cover SQLite and PostgreSQL databases, not {name}.")
    return name


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("An in-memory SQLite database has nothing to back up or restore into.")
    return Path(database)


def _dump_sqlite(url: str, out: Path) -> str:
    """Copies the database with SQLite's backup API: in one step, so the copy is one consistent snapshot
    while the app goes on writing. Returns the copy's schema revision."""
    path = _sqlite_path(url)
    if not path.is_file():
        raise BackupError(f"The database file {path} does not exist; check ACCORD_DATABASE_URL / ACCORD_DATA_DIR.")
    try:
        with (
            contextlib.closing(sqlite3.connect(path, timeout=30)) as source,
            contextlib.closing(sqlite3.connect(out)) as copy,
        ):
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # a self-contained file: nothing left in a -wal beside it
            has_schema = copy.execute("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'").fetchone()
            revision = copy.execute("SELECT version_num FROM alembic_version").fetchone() if has_schema else None
    except sqlite3.DatabaseError as error:
        raise BackupError(f"The database {path} could not be copied: {error}.") from None
    if revision is None:
        raise BackupError(f"The database {path} has no schema yet (run `accord migrate`); there is nothing to back up.")
    return revision[0]


def _dump_postgresql(url: str, out: Path) -> str:
    """`pg_dump --format=custom`, which reads one snapshot of the whole database in a single transaction."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            major = _server_major(conn)
            if not sa.inspect(conn).has_table("alembic_version"):
                raise BackupError(f"The database {_shown(url)} has no schema yet (run `accord migrate`).")
            revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    _run_pg_tool("pg_dump", major, url, ["--format=custom", "--no-password", f"--file={out}"])
    return revision


# --- PostgreSQL client tools -----------------------------------------------------------------------------


def pg_tool(name: str, server_major: int | None = None, *, search: str = PG_BIN_DIRS) -> str:
    """The client tool `name`: of the server's own major version when installed (a newer pg_restore could
    read what an older one cannot), else the one in PATH, else the newest installed."""
    installed = {
        int(Path(folder).parent.name): Path(folder) / name
        for folder in glob.glob(search)
        if Path(folder).parent.name.isdigit() and (Path(folder) / name).is_file()
    }
    if server_major in installed:
        return str(installed[server_major])
    in_path = shutil.which(name)
    if in_path:
        return in_path
    if installed:
        return str(installed[max(installed)])
    version = f"-{server_major}" if server_major else ""
    raise ToolMissing(
        f"{name} was not found (neither in PATH nor in {search}). Install the PostgreSQL client tools of the "
        f"server's version (on Debian: apt-get install postgresql-client{version}) or add their folder to PATH."
    )


def _server_major(conn: sa.Connection) -> int:
    return int(conn.execute(sa.text("SELECT current_setting('server_version_num')")).scalar_one()) // 10000


def _pg_environment(url: URL) -> dict[str, str]:
    """The tools' environment: the URL's connection settings (and its password) as libpq's variables, so
    nothing secret is in a command line; the rest is inherited, as the app's own connections inherit it."""
    env = dict(os.environ)
    for key, value in url.query.items():
        if key in _LIBPQ_ENV:
            env[_LIBPQ_ENV[key]] = value if isinstance(value, str) else value[-1]
    for variable, value in (
        ("PGHOST", url.host), ("PGPORT", url.port), ("PGUSER", url.username), ("PGPASSWORD", url.password),
        ("PGDATABASE", url.database),
    ):  # fmt: skip
        if value is not None:
            env[variable] = str(value)
    return env


def _run_pg_tool(name: str, server_major: int, url: str, arguments: list[str]) -> None:
    tool = pg_tool(name, server_major)
    done = subprocess.run(
        [tool, *arguments], env=_pg_environment(make_url(url)), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BackupError(f"{name} failed on {_shown(url)} (exit {done.returncode}): {done.stderr.strip()}")


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


# --- restore ---------------------------------------------------------------------------------------------


def restore(*, installation: Installation, archive: Path) -> Restored:
    """Restores `archive` into an empty installation, then brings its schema to this version's head.

    Nothing is changed until the whole archive has been unpacked (beside the installation's data) and every
    member matched its manifest, and the installation was found empty.
    """
    backend = _backend(installation.database_url)
    installation.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=installation.data_dir, prefix=".accord-restore-") as work:
        staging = Path(work)
        try:
            manifest = _unpack(archive, staging)
            _check_fits(manifest, backend, installation.database_url)
            _check_empty(installation)
            _check_idle(installation.database_url)
        except BackupError as error:
            raise type(error)(f"{error}\nNothing was restored.") from None
        placed = _place_files(staging, installation)
        try:
            if backend == "sqlite":
                _restore_sqlite(installation.database_url, staging / manifest.database_member)
            else:
                _restore_postgresql(installation.database_url, staging / manifest.database_member)
        except BaseException as error:
            for path in placed:  # the folders go back to empty, as the database is (or stayed)
                path.unlink(missing_ok=True)
            if isinstance(error, BackupError):
                raise BackupError(f"{error}\nThe folders are empty again and the database has no data.") from None
            raise
    head = _head(installation.database_url)
    migrated_to = None
    if manifest.alembic_revision != head:
        migrate(installation.database_url)
        migrated_to = head
    engine = create_db_engine(installation.database_url)
    try:
        check_migrated(engine)
    except DatabaseNotMigrated as error:
        raise BackupError(f"The restored database is not at this version's schema: {error}") from None
    finally:
        engine.dispose()
    return Restored(manifest=manifest, migrated_to=migrated_to)


def _unpack(archive: Path, staging: Path) -> Manifest:
    """Unpacks every member into `staging`, hashing it on the way, and checks all of them against the
    manifest: no member missing, none extra, each of the listed size and SHA-256."""
    if not archive.is_file():
        raise BackupError(f"There is no archive at {archive}.")
    found: dict[str, Member] = {}
    manifest_data: bytes | None = None
    try:
        with tarfile.open(archive, "r:*") as tar:
            for info in tar:
                name = info.name
                if name in found or (name == MANIFEST and manifest_data is not None):
                    raise ArchiveRejected(f"{archive} holds {name} twice; it was altered.")
                if not info.isreg() or not _is_member_name(name):
                    raise ArchiveRejected(f"{archive} holds {name!r}, which no backup contains; it was altered.")
                source = tar.extractfile(info)
                if name == MANIFEST:
                    manifest_data = source.read()
                else:
                    found[name] = _stage(source, staging / name, name)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as error:
        raise ArchiveRejected(f"{archive} is not a readable backup archive ({error}).") from None
    if manifest_data is None:
        raise ArchiveRejected(f"{archive} has no {MANIFEST}: it is not a Crisis Accord backup.")
    manifest = Manifest.parse(manifest_data)
    listed = {m.name: m for m in manifest.members}
    problems = [f"{name} is listed in the manifest but missing from the archive" for name in listed.keys() - found]
    problems += [f"{name} is in the archive but not in the manifest" for name in found.keys() - listed]
    for name, member in sorted(listed.items()):
        got = found.get(name)
        if got is not None and got != member:
            problems.append(
                f"{name} has {got.size} bytes with SHA-256 {got.sha256}, "
                f"the manifest says {member.size} bytes with SHA-256 {member.sha256}"
            )
    if problems:
        shown = "\n".join(f"  - {p}" for p in sorted(problems)[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ArchiveRejected(f"{archive} does not match its manifest: it was damaged or altered.\n{shown}{more}")
    return manifest


def _is_member_name(name: str) -> bool:
    """Whether a backup could hold `name`: no other name is ever unpacked (nor any path outside the staging)."""
    folder, _, rest = name.partition("/")
    return (
        name == MANIFEST or name in DATABASE_MEMBERS.values() or (folder in FOLDERS and bool(_STORED_FILE.match(rest)))
    )


def _stage(source: IO[bytes], target: Path, name: str) -> Member:
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with target.open("xb") as out:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return Member(name=name, size=size, sha256=digest.hexdigest())


def _head(url: str) -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def _check_fits(manifest: Manifest, backend: str, url: str) -> None:
    """The archive's database is of this installation's kind and of a schema this version can migrate."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    if manifest.backend != backend:
        raise BackupError(
            f"The archive holds a {manifest.backend} database, but this installation's database ({_shown(url)}) "
            f"is {backend}. Restore it into an installation with a {manifest.backend} database."
        )
    try:
        known = ScriptDirectory.from_config(alembic_config(url)).get_revision(manifest.alembic_revision) is not None
    except CommandError:
        known = False
    if not known:
        raise BackupError(
            f"The archive's database is at schema revision {manifest.alembic_revision}, which this version of "
            "Crisis Accord does not know: it was made by a newer version. Restore it with that version."
        )


def _check_empty(installation: Installation) -> None:
    """Refuses a database with any row of data or a folder with any stored file: a restore never merges."""
    problems = []
    tables = _tables_with_rows(installation.database_url)
    if tables:
        shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more tables" if len(tables) > 5 else "")
        problems.append(f"the database {_shown(installation.database_url)} has data (in {shown})")
    for folder in FOLDERS:
        root = installation.folder(folder)
        if count := len(stored_files(root)):
            problems.append(f"the {folder} folder {root} is not empty ({count} stored files)")
    if problems:
        raise InstallationNotEmpty(
            "A backup is restored only into an empty installation, but "
            + "; ".join(problems)
            + ". Point the settings at a new database and empty folders, then run the restore again."
        )


def _tables_with_rows(url: str) -> list[str]:
    if make_url(url).get_backend_name() == "sqlite" and not _sqlite_path(url).exists():
        return []
    with _engine(url) as engine, engine.connect() as conn:
        names = sorted(set(sa.inspect(conn).get_table_names()) - BOOKKEEPING_TABLES)
        query = sa.select(sa.literal(1)).limit(1)
        return [name for name in names if conn.execute(query.select_from(sa.table(name))).first() is not None]


@contextlib.contextmanager
def _engine(url: str) -> Iterator[Engine]:
    engine = create_db_engine(url)
    try:
        yield engine
    except sa.exc.OperationalError as error:
        raise BackupError(f"Could not use the database {_shown(url)}: {error.orig}") from None
    finally:
        engine.dispose()


def _place_files(staging: Path, installation: Installation) -> list[Path]:
    """Moves the unpacked files into the folders (each complete on disk before it gets its name)."""
    placed = []
    for folder in FOLDERS:
        unpacked = staging / folder
        for relative in stored_files(unpacked):
            target = installation.folder(folder) / relative
            (unpacked / relative).chmod(0o444)  # as the service stores them: written once, never changed
            _move(unpacked / relative, target)
            placed.append(target)
    for directory in {path.parent for path in placed} | {path.parent.parent for path in placed}:
        _fsync_directory(directory)
    return placed


def _move(source: Path, target: Path) -> None:
    """Renames `source` to `target`; across file systems, copies to a temporary name beside it first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, target)
        return
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as data:
            shutil.copyfileobj(data, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, source.stat().st_mode & 0o777)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a crash
    finally:
        os.close(fd)


def _check_idle(url: str) -> None:
    """Refuses a database another process has open: a running app would go on with the database it had.

    On SQLite the empty database leaves WAL mode, which only a connection that is alone with it can do; this
    also empties its -wal file, which SQLite would otherwise replay onto the restored one.
    """
    if make_url(url).get_backend_name() == "sqlite":
        path = _sqlite_path(url)
        if path.exists():
            try:
                with contextlib.closing(sqlite3.connect(path, timeout=2)) as conn:
                    conn.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.OperationalError as error:
                raise BackupError(
                    f"The database file {path} is in use ({error}); stop the app and the scheduler, then restore."
                ) from None
        return
    with _engine(url) as engine, engine.connect() as conn:
        others = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
        ).scalar_one()
    if others:
        raise BackupError(
            f"The database {_shown(url)} is in use ({others} other connections); stop the app and the scheduler, "
            "then restore."
        )


def _restore_sqlite(url: str, unpacked: Path) -> None:
    """Puts the database file in place by a rename (the empty one it replaces left WAL mode in `_check_idle`)."""
    path = _sqlite_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    _move(unpacked, path)
    _fsync_directory(path.parent)


# The functions of the current schema that no extension brought, as "name(argument types)".
_OWN_FUNCTIONS = sa.text(
    "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace "
    "AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')"
)


def _restore_postgresql(url: str, dump: Path) -> None:
    """`pg_restore --no-owner` into the empty database, after dropping the empty tables and the functions a
    migration may have made there (the archive brings its own, of its revision)."""
    with _engine(url) as engine, engine.begin() as conn:
        major = _server_major(conn)
        inspector = sa.inspect(conn)
        quote = conn.dialect.identifier_preparer.quote
        sequences = inspector.get_sequence_names()
        for table in inspector.get_table_names():
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {quote(table)} CASCADE"))
        for sequence in sequences:
            conn.execute(sa.text(f"DROP SEQUENCE IF EXISTS {quote(sequence)}"))
        for function in conn.execute(_OWN_FUNCTIONS).scalars():
            conn.execute(sa.text(f"DROP FUNCTION IF EXISTS {function}"))  # its name and argument types
    database = make_url(url).database or ""
    conninfo = "dbname='" + database.replace("\\", "\\\\").replace("'", "\\'") + "'"
    _run_pg_tool(
        "pg_restore", major, url,
        ["--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", "--no-password",
         f"--dbname={conninfo}", str(dump)],
    )  # fmt: skip
