"""The one settings object: every setting is an `ACCORD_`-prefixed environment variable (or `.env`)."""

import contextlib
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACCORD_", env_file=".env", extra="ignore")

    data_dir: Path = PROJECT_ROOT / "var"
    database_url: str = ""
    secret_key: str = ""
    memoranda_dir: Path = PROJECT_ROOT / "memoranda"
    public_mirror_dir: Path | None = None  # None: `public/` under the data directory
    base_url: str = "http://127.0.0.1:8000"

    municipality_name: str = "Община Примерно"
    municipality_name_en: str = "Primerno Municipality"
    municipality_eik: str = "000697371"
    municipality_address: str = "пл. „Свобода“ 1, гр. Примерно"
    municipality_address_en: str = "1 Svoboda Square, Primerno"
    municipality_representative: str = "Петър Димитров"
    municipality_representative_en: str = "Petar Dimitrov"
    municipality_representative_title: str = "кмет на Община Примерно"
    municipality_representative_title_en: str = "Mayor of Primerno Municipality"
    municipality_coat_of_arms: Path | None = None  # an SVG, PNG or JPEG; None: the placeholder in templates/memoranda
    default_language: str = "bg"
    timezone: str = "Europe/Sofia"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "crisis-accord@localhost"
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 10.0

    run_scheduler: bool = True
    outbox_interval_seconds: int = 30
    scheduler_lock_seconds: int = 60
    reverification_days: int = 365

    pdf_render_timeout_seconds: float = Field(default=30.0, gt=0)
    pdf_render_workers: int = Field(default=2, ge=1)
    pdf_render_memory_mb: int = Field(default=2048, ge=0)  # the address space a render worker may use; 0: no limit
    pdf_render_nice: int = Field(default=10, ge=0, le=19)  # render workers' CPU priority below the web's
    pdf_render_idle: bool = True  # render workers in Linux's SCHED_IDLE class: only CPU nobody else wants
    # `accord serve` with one process on two or more CPUs: the event loop and the renders on one half of them, the
    # request threads on the other (service/cpus.py says why)
    cpu_layout: bool = True
    pdf_warm_up: bool = True  # start the render workers with the app: the first document does not wait

    session_hours: int = 12
    token_hours: int = 12
    secure_cookies: bool = False
    login_slowdown_after: int = 3
    login_lock_after: int = 10
    login_lock_minutes: int = 15

    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)

    # PAdES signing of fully signed memoranda: PEM or DER files; no certificate configured, no signature.
    signing_key_path: Path | None = None
    signing_cert_path: Path | None = None
    signing_chain_path: Path | None = None
    signing_key_password: str = ""

    # Public updates: the CAP sender (default `crisis-accord@<host of base_url>`), how long the public pages
    # may be cached by browsers and proxies, how long a rendered page is reused by this process, and how
    # often scheduled updates are looked for (they go out within that many seconds of their time).
    cap_sender: str = ""
    public_max_age_seconds: int = Field(default=30, ge=0)
    public_stale_seconds: int = Field(default=86400, ge=0)  # served stale by a proxy while the app is down
    public_cache_seconds: float = Field(default=1.0, ge=0)
    publish_check_seconds: int = Field(default=2, ge=1)
    public_mirror: bool = True  # write the static mirror of the public site on every change

    # Consultations: attachments (PDF only) are kept by SHA-256 in this folder (default `attachments/` under
    # the data directory), each at most this size. The situation report goes by e-mail each day at this local
    # hour to these addresses (comma-separated; none: not sent).
    attachments_dir: Path | None = None
    attachment_max_mb: float = Field(default=10, gt=0)
    sitrep_recipients: str = ""
    sitrep_hour: int = Field(default=7, ge=0, le=23)

    # Limits (service/limits.py). The largest request body, comfortably above the largest upload (a PDF to
    # /verify, 25 MB). Logins and anonymous uploads per client address in any window of this many seconds
    # (0: no limit; counted per process, so nginx's limit_req holds the total for several). How long the app
    # waits on the database before answering 503: a PostgreSQL statement and lock wait (0: no limit), a free
    # connection in the pool, SQLite's write lock (`accord` commands and migrations keep no limit).
    max_body_mb: float = Field(default=32, gt=0)
    login_rate_limit: int = Field(default=30, ge=0)
    public_write_rate_limit: int = Field(default=30, ge=0)
    rate_limit_window_seconds: float = Field(default=60, gt=0)
    db_statement_timeout_seconds: float = Field(default=15, ge=0)
    db_lock_timeout_seconds: float = Field(default=10, ge=0)
    db_pool_timeout_seconds: float = Field(default=10, gt=0)
    sqlite_write_wait_seconds: float = Field(default=30, gt=0)
    # Pledges through the API that one app process works on at once (on PostgreSQL also the number of its
    # event loop's connections for partners' pledges); a surge beyond waits its turn in the event loop
    # (service/emergencies/api.py; on PostgreSQL at most db_pool_timeout_seconds).
    pledge_concurrency: int = Field(default=4, ge=1)

    # Operations (service/observability.py): log lines as readable `text` or, for a log collector, one `json`
    # object per line, from this level up. Who may read /metrics: with this bearer token when one is set,
    # otherwise only a client on this host (loopback).
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_token: str = ""

    @cached_property
    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file under the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'accord.db'}"

    @property
    def effective_attachments_dir(self) -> Path:
        return self.attachments_dir or self.data_dir / "attachments"

    @property
    def effective_public_mirror_dir(self) -> Path:
        return self.public_mirror_dir or self.data_dir / "public"

    @cached_property
    def effective_secret_key(self) -> str:
        """The configured key, or one generated once and kept in the data directory."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # Link, not rename: when two processes start at once, the first key wins for both.
            tmp = path.with_name(f"secret_key.{os.getpid()}.tmp")
            tmp.write_text(secrets.token_urlsafe(48))
            tmp.chmod(0o600)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
            tmp.unlink()
        return path.read_text().strip()


settings = Settings()
