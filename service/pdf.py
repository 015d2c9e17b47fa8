"""The safe PDF renderer: HTML of a trusted layout to PDF/A, in a worker process that is killed when it runs too long,
with a URL fetcher that serves only the files below `templates/` and fetches nothing else.

Jinja2's sandbox bounds what a template may touch, not how much work it does, and WeasyPrint follows any URL it is
given; so every render runs in a separate, warm worker process (killed and replaced on timeout), and the only
resources a document can load are stylesheets, images and fonts below `templates/`, or `data:` URIs.
"""

import base64
import contextlib
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from io import BytesIO
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import DataHandler, Request, url2pathname

from service import cpus
from service.config import PROJECT_ROOT, settings
from service.errors import DomainError
from service.i18n import N_

logger = logging.getLogger(__name__)

TEMPLATES_DIR = PROJECT_ROOT / "templates"
SERVED_TYPES = {
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
}
WORKER_START_SECONDS = 60.0  # a cold worker imports WeasyPrint and renders a warm-up page first; not the render's time


class RenderTimeout(DomainError):
    """A render stopped by the time limit; its worker was killed."""

    status_code = 422

    def __init__(self, seconds: float) -> None:
        super().__init__(
            N_(
                "The document took longer than {seconds} s to render and was stopped; "
                "shorten the longest texts, or ask an administrator to check the template."
            ),
            seconds=f"{seconds:g}",
        )
        self.seconds = seconds

    def __reduce__(self) -> tuple:
        return (type(self), (self.seconds,))


class RenderFailed(RuntimeError):
    """A render that failed for a reason other than the rules: a broken template, a crashed worker."""


class URLRefused(ValueError):
    """A resource the PDF may not load: anything but a file below `templates/` or a `data:` URI."""


@dataclass(frozen=True)
class Attachment:
    """A file embedded in the PDF (PDF/A-3 allows any type); `relationship` is its PDF/A-3 AFRelationship."""

    filename: str
    content: bytes
    description: str = ""
    media_type: str = "application/octet-stream"
    relationship: str = "Data"

    def data_uri(self) -> str:
        return f"data:{self.media_type};base64,{base64.b64encode(self.content).decode('ascii')}"


def render_pdf(
    html: str,
    *,
    attachments: Sequence[Attachment] = (),
    pdf_variant: str | None = "pdf/a-3b",
    timeout_seconds: float | None = None,
) -> bytes:
    """The PDF of `html` (relative URLs resolve against `templates/`), rendered in a worker within the time limit."""
    return run_isolated(
        html_to_pdf, html, attachments=tuple(attachments), pdf_variant=pdf_variant, timeout_seconds=timeout_seconds
    )


def merge_pdfs(first: bytes, second: bytes) -> bytes:
    """`first` with the pages of `second` appended; the first one's metadata, XMP and attachments are kept."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(BytesIO(first)))
    writer.append(PdfReader(BytesIO(second)))
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def run_isolated(
    function: Callable[..., Any], /, *args: Any, timeout_seconds: float | None = None, **kwargs: Any
) -> Any:
    """`function(*args, **kwargs)` run in a render worker, killed after `timeout_seconds` (default: the setting).

    `function` must be a module-level function, and its arguments and result picklable. A `DomainError` it raises
    is raised here as it is; any other error as `RenderFailed`. What it logs at WARNING or above is logged here.
    The calling thread blocks; other threads keep working (and render in other workers, up to the pool's size).
    """
    seconds = settings.pdf_render_timeout_seconds if timeout_seconds is None else timeout_seconds
    return _pool().run((function, args, kwargs), seconds)


def warm_up() -> None:
    """Starts the render workers now, so that the first document does not wait for them to start."""
    _pool().fill()


def shutdown() -> None:
    """Stops the idle render workers (a later render starts new ones)."""
    _pool().close_idle()


def html_to_pdf(html: str, *, attachments: Sequence[Attachment] = (), pdf_variant: str | None = "pdf/a-3b") -> bytes:
    """The PDF of `html`, in this process and without a time limit: for code already running in a render worker."""
    import weasyprint

    fetcher = template_fetcher(TEMPLATES_DIR)
    document = weasyprint.HTML(string=html, base_url=f"{TEMPLATES_DIR}/", url_fetcher=fetcher)
    embedded = [
        weasyprint.Attachment(
            url=attachment.data_uri(),
            url_fetcher=fetcher,
            name=attachment.filename,
            description=attachment.description or None,
            relationship=attachment.relationship,
        )
        for attachment in attachments
    ]
    return document.write_pdf(attachments=embedded, pdf_variant=pdf_variant, finisher=_list_each_file_once)


def _list_each_file_once(document: Any, pdf: Any) -> None:
    # WeasyPrint 70's PDF/A-3 step lists each embedded file twice in the catalog's /AF; once is what the standard means.
    files = pdf.catalog.get("AF")
    if files:
        files[:] = list(dict.fromkeys(files))


def template_fetcher(root: Path = TEMPLATES_DIR) -> Any:
    """The deny-by-default WeasyPrint URL fetcher: files below `root` and `data:` URIs, nothing else."""
    return _fetcher_class()(root)


@cache
def _fetcher_class() -> type:
    # Built on first use, so that importing this module (as every web process does) does not import WeasyPrint.
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class TemplateFetcher(URLFetcher):
        """Serves files below `root` (after resolving `..` and symlinks) of a served type, and `data:` URIs;
        refuses and logs everything else. It never opens a connection, so there is no redirect to follow."""

        def __init__(self, root: Path) -> None:
            super().__init__(allowed_protocols=("data", "file"), allow_redirects=False, fail_on_errors=False)
            self.root = Path(root).resolve()

        def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
            scheme = url.split(":", 1)[0].lower() if ":" in url else ""
            if scheme == "data":
                response = DataHandler().data_open(Request(url))  # noqa: S310 (a data: URI, decoded in memory)
                return URLFetcherResponse(url, response.read(), {"Content-Type": response.info().get_content_type()})
            if scheme == "file":
                path = self.served_path(url)
                if path is not None:
                    content_type = SERVED_TYPES[path.suffix.lower()]
                    return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": content_type})
            logger.warning("Refused to load %s into a PDF: only files below %s may be loaded", url[:300], self.root)
            raise URLRefused(f"Refused to load {url[:300]}")

        def open(self, url: Any, data: Any = None, timeout: Any = None) -> URLFetcherResponse:
            return self.fetch(url.full_url if isinstance(url, Request) else url)

        def served_path(self, url: str) -> Path | None:
            """The file a `file:` URL names, if it lies below the root (symlinks resolved) and is of a served type."""
            parts = urlsplit(url)
            if parts.netloc not in ("", "localhost"):
                return None
            try:
                path = Path(url2pathname(parts.path)).resolve(strict=True)
            except (OSError, RuntimeError, ValueError):
                return None
            if not path.is_relative_to(self.root) or not path.is_file():
                return None
            return path if path.suffix.lower() in SERVED_TYPES else None

    return TemplateFetcher


# The worker side.


class _LogCollector(logging.Handler):
    """Keeps what a job logs, made picklable, so that the parent logs it in its own configuration."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        records, self.records = self.records, []
        return records


def _limit_memory(megabytes: int) -> None:
    if megabytes > 0:
        import resource

        limit = megabytes * 1024 * 1024
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _portable(error: BaseException) -> BaseException:
    """`error` if it is a DomainError that survives pickling, else a RenderFailed saying what it was."""
    if isinstance(error, DomainError):
        with contextlib.suppress(Exception):
            pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
            return error
    logger.error("Render failed:\n%s", "".join(traceback.format_exception(error)))
    return RenderFailed(f"Rendering failed: {type(error).__name__}: {error}")


def _worker_main() -> None:
    """A worker process's entry: `python -c ... <socket fd> <memory limit in MB> <parent pid>`."""
    _exit_with_parent(int(sys.argv[3]))
    _serve(Connection(int(sys.argv[1])), int(sys.argv[2]))


def _exit_with_parent(parent_pid: int) -> None:
    """Ends this worker when its parent is gone, even in the middle of a runaway render (which would otherwise
    outlive a server that was killed). A watch thread, not PR_SET_PDEATHSIG: that fires when the *thread* that
    started the worker ends, and the server starts workers from pool threads that come and go."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _serve(conn: Connection, memory_mb: int) -> None:
    """A worker's loop: warm up, say ready, then run one job at a time until the parent closes the socket
    (or goes away: a parent that exits mid-conversation simply ends the worker, quietly)."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        _serve_jobs(conn, memory_mb)


def _serve_jobs(conn: Connection, memory_mb: int) -> None:
    _limit_memory(memory_mb)
    # Renders yield the CPU to the web process: a page or a pledge waits less, a PDF takes a little longer.
    os.nice(settings.pdf_render_nice)
    if settings.pdf_render_idle and hasattr(os, "SCHED_IDLE"):
        # Linux's idle class goes further than any nice level: a waking web process takes the CPU from a
        # render at once instead of at the end of the render's time slice. A render still runs whenever a
        # core has nothing else to do, which on a server answering requests is most of the time.
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    collector = _LogCollector()
    logging.getLogger().addHandler(collector)
    logging.getLogger().setLevel(logging.WARNING)
    with contextlib.suppress(Exception):
        html_to_pdf('<p style="font-family: DejaVu Serif">Проба</p>')  # loads fontconfig, fonts and the ICC profile
    collector.take()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            function, args, kwargs = conn.recv()
            outcome: tuple[str, Any] = ("ok", function(*args, **kwargs))
        except EOFError:
            return
        except MemoryError:
            outcome = ("error", RenderFailed("Rendering ran out of memory (see the pdf_render_memory_mb setting)."))
        except Exception as error:
            outcome = ("error", _portable(error))
        try:
            conn.send((*outcome, collector.take()))
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            conn.send(("error", RenderFailed(f"The render's result could not be returned: {error}"), []))


# The parent side.


class _Worker:
    """One render process and the socket to it.

    A plain `python -c` child rather than multiprocessing's spawn: spawn re-runs the parent's main script in the
    child, which breaks any caller (a benchmark, a one-off script) that lacks an `if __name__ == "__main__"` guard.
    """

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        code = f"import sys; sys.path.insert(0, {str(PROJECT_ROOT)!r}); import service.pdf as p; p._worker_main()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(theirs.fileno()), str(settings.pdf_render_memory_mb), str(os.getpid())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        render_cpus = cpus.loop_cpus()
        if render_cpus:  # the event loop's, not those of the thread that started it
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.process.pid, render_cpus)
        theirs.close()
        self.conn = Connection(ours.detach())
        self.ready = False

    def call(self, job: tuple, seconds: float) -> tuple[str, Any]:
        """Runs `job`: ("ok", result) or ("error", the job's exception); raises when the worker fails or times out."""
        if not self.ready:
            if not self.conn.poll(WORKER_START_SECONDS):
                raise RenderFailed(f"The PDF render worker did not start within {WORKER_START_SECONDS:g} s.")
            self.conn.recv()
            self.ready = True
        self.conn.send(job)
        if not self.conn.poll(seconds):
            raise RenderTimeout(seconds)
        status, payload, records = self.conn.recv()
        for record in records:
            logging.getLogger(record.name).handle(record)
        return status, payload

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
            self.process.wait(5)
        self.conn.close()


class _Pool:
    """Up to `size` warm workers; one that times out or breaks is killed, and a fresh one started at once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.slots = threading.BoundedSemaphore(size)
        self.lock = threading.Lock()
        self.idle: list[_Worker] = []

    def run(self, job: tuple, seconds: float) -> Any:
        with self.slots:
            worker = self.take()
            try:
                status, payload = worker.call(job, seconds)
            except RenderTimeout:
                self.replace(worker)
                logger.warning("A PDF render ran longer than %g s; its worker was killed", seconds)
                raise
            except (EOFError, OSError) as error:
                self.replace(worker)
                raise RenderFailed(
                    f"The PDF render worker stopped unexpectedly (exit code {worker.process.poll()})."
                ) from error
            except BaseException:
                self.replace(worker)
                raise
            self.give(worker)
        if status == "error":
            raise payload
        return payload

    def take(self) -> _Worker:
        with self.lock:
            while self.idle:
                worker = self.idle.pop()
                if worker.alive():
                    return worker
                worker.kill()
        return _Worker()

    def give(self, worker: _Worker) -> None:
        with self.lock:
            if len(self.idle) < self.size:
                self.idle.append(worker)
                return
        worker.kill()

    def replace(self, worker: _Worker) -> None:
        worker.kill()
        self.give(_Worker())  # starts warming up now, in the background

    def fill(self) -> None:
        with self.lock:
            while len(self.idle) < self.size:
                self.idle.append(_Worker())

    def close_idle(self) -> None:
        with self.lock:
            workers, self.idle = self.idle, []
        for worker in workers:
            worker.kill()


_pools: dict[int, _Pool] = {}
_pools_lock = threading.Lock()


def _pool() -> _Pool:
    # One pool per process: a forked child must not share its parent's pipes.
    with _pools_lock:
        pool = _pools.get(os.getpid())
        if pool is None:
            pool = _pools[os.getpid()] = _Pool(settings.pdf_render_workers)
        return pool
