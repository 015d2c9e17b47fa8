"""The static mirror of the public site: after every publication, correction and retraction (and every
change to the active emergencies) the public pages and feeds are written as files, so that nginx or a CDN
can serve them while the app or the database is down.

Each file is replaced atomically (temporary file, fsync, rename) and `manifest.json`, written last, lists
every file with its SHA-256. Builders on one machine take turns (a file lock) and each reads the database
after the change it follows was committed, so the last one leaves the newest state. The layout (see the
README's nginx configuration): `index.{lang}.html`, `fact-checks.{lang}.html`, `updates/{id}.{lang}.html`,
`updates/{id}/cap.xml`, `feeds/updates.atom`, `feeds/cap.atom`, `api/v1/public/updates.json`, and the
stylesheet under `static/`; the default language's pages also without the `.{lang}`.
"""

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from service.bulletins import changes, public
from service.bulletins import service as bulletins
from service.config import settings
from service.db import utcnow
from service.i18n import LANGUAGES
from service.web import TEMPLATES_DIR

log = logging.getLogger("accord.public")

MANIFEST = "manifest.json"
STYLESHEET = "static/css/public.css"
_UPDATE_FILE = re.compile(r"^updates/(\d+)(?:\.[a-z]{2}\.html|\.html|/cap\.xml)$")


def root() -> Path:
    return Path(settings.effective_public_mirror_dir)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    # Beside the folder, not in it: nothing but the public files is in what nginx serves.
    with open(directory.with_name(f".{directory.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _shared_files(session: Session) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for language in LANGUAGES:
        files[f"index.{language}.html"] = public.home(session, language).body
        files[f"fact-checks.{language}.html"] = public.fact_checks_page(session, language).body
    files["index.html"] = files[f"index.{settings.default_language}.html"]
    files["fact-checks.html"] = files[f"fact-checks.{settings.default_language}.html"]
    files["feeds/updates.atom"] = public.updates_feed(session).body
    files["feeds/cap.atom"] = public.cap_feed(session).body
    files["api/v1/public/updates.json"] = public.updates_json(session, None, 50, 0).body
    files[STYLESHEET] = (TEMPLATES_DIR / STYLESHEET).read_bytes()
    return files


def _update_files(session: Session, bulletin_id: int) -> dict[str, bytes]:
    files = {f"updates/{bulletin_id}/cap.xml": public.cap_message(session, bulletin_id).body}
    for language in LANGUAGES:
        files[f"updates/{bulletin_id}.{language}.html"] = public.update_page(session, bulletin_id, language).body
    files[f"updates/{bulletin_id}.html"] = files[f"updates/{bulletin_id}.{settings.default_language}.html"]
    return files


def _read_manifest(directory: Path) -> dict[str, str] | None:
    try:
        return json.loads((directory / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError):
        return None


def refresh(engine: Engine, changed: frozenset[int] = frozenset({changes.ALL})) -> None:
    """Brings the mirror up to date with the database: the shared pages always, the updates named in
    `changed` (every update when it holds `changes.ALL` or the mirror has no manifest yet)."""
    if not settings.public_mirror:
        return
    directory = root()
    with _locked(directory), Session(engine) as session:
        manifest = _read_manifest(directory)
        public_ids = set(bulletins.public_ids(session=session))
        full = manifest is None or changes.ALL in changed
        files = _shared_files(session)
        for bulletin_id in public_ids if full else (set(changed) & public_ids):  # ALL and SHARED match no id
            files.update(_update_files(session, bulletin_id))
        kept = {} if full else dict(manifest)
        for name, data in files.items():
            digest = hashlib.sha256(data).hexdigest()
            if kept.get(name) != digest or not (directory / name).is_file():
                write_atomically(directory / name, data)
            kept[name] = digest
        # Files of updates that are no longer public (a full rebuild finds them all) are removed.
        for name in [n for n in list(kept) if (m := _UPDATE_FILE.match(n)) and int(m[1]) not in public_ids]:
            (directory / name).unlink(missing_ok=True)
            del kept[name]
        if full:
            for path in (directory / "updates").rglob("*") if (directory / "updates").is_dir() else ():
                name = path.relative_to(directory).as_posix()
                if path.is_file() and name not in kept:
                    path.unlink()
        manifest_data = {"generated_at": utcnow().isoformat(), "files": dict(sorted(kept.items()))}
        write_atomically(directory / MANIFEST, json.dumps(manifest_data, indent=1).encode())


@changes.listen
def _on_public_change(engine: Engine, changed: frozenset[int]) -> None:
    public.pages.clear()
    refresh(engine, changed)
