"""The archive of memorandum files (issued and signed PDFs, scanned copies), each stored under its SHA-256.

A file is written once: to a temporary name, flushed to disk, then renamed into place, so a crash leaves
either the whole file or none. A stored file is never changed; the same content stores to the same name.
"""

import hashlib
import os
import re
import tempfile
from pathlib import Path

from service.config import settings

SHA256 = re.compile(r"[0-9a-f]{64}\Z")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _root() -> Path:
    return Path(settings.memoranda_dir)


def path_of(digest: str, root: Path | None = None) -> Path:
    """Where a file lives: in the memoranda archive, or below `root` (another archive of PDFs)."""
    if not SHA256.match(digest):
        raise ValueError(f"not a SHA-256 hex digest: {digest!r}")
    return (root or _root()) / digest[:2] / f"{digest}.pdf"


def store(data: bytes, root: Path | None = None) -> str:
    """Stores `data` under its SHA-256 (once) and returns the digest."""
    digest = sha256_hex(data)
    target = path_of(digest, root)
    if target.exists():
        return digest
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-", suffix=".pdf")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o444)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
    return digest


def load(digest: str, root: Path | None = None) -> bytes:
    """The stored file's bytes, checked against its name: a changed file is an error, never served."""
    data = path_of(digest, root).read_bytes()
    if sha256_hex(data) != digest:
        raise ArchiveCorrupted(f"The archived file {digest} no longer matches its SHA-256.")
    return data


class ArchiveCorrupted(RuntimeError):
    """A file in the archive whose content no longer matches its name."""
