"""The `accord` command: serve, migrate, create-admin, demo-data, scheduler, audit-verify, backup, restore."""

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from service.config import settings
from service.db import create_db_engine, session_scope
from service.db import migrate as migrate_database

app = typer.Typer(help="Crisis Accord: partners, memoranda, pledges and verified public updates.", no_args_is_help=True)


def _engine():
    return create_db_engine(settings.effective_database_url)


@app.callback()
def _configure_logging() -> None:
    # Every command's log lines in the one format (ACCORD_LOG_FORMAT), with the job or request they belong to.
    from service import observability

    observability.configure_logging()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="App processes (use PostgreSQL for more than one).")] = 1,
    access_log: Annotated[
        bool, typer.Option(help="Log every request (behind nginx, which logs them too, turn it off).")
    ] = True,
) -> None:
    """Serve the pages and the API (and, unless ACCORD_RUN_SCHEDULER=false, the scheduled jobs)."""
    import uvicorn

    from service.db import DatabaseNotMigrated, check_migrated

    try:
        check_migrated(_engine())
    except DatabaseNotMigrated as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    from service import demo, observability

    typer.echo(demo.banner(host=host, port=port))
    if settings.cpu_layout:
        from service import cpus

        layout = cpus.apply(workers=workers, data_dir=settings.data_dir)
        if layout is not None:
            typer.echo(f"CPU layout: {layout.describe()} (ACCORD_CPU_LAYOUT=false turns it off)")
    # The workers count into files in one fresh folder, so any of them answers /metrics with the totals.
    # uvicorn's access line gives way to ours, which has the route, the duration and the request id.
    with observability.multiprocess_metrics(settings.data_dir / "metrics"):
        uvicorn.run(
            "service.main:create_app", factory=True, host=host, port=port, workers=workers, proxy_headers=True,
            access_log=False, log_config=observability.logging_config(access_log=access_log),
        )  # fmt: skip


@app.command()
def migrate() -> None:
    """Bring the database to the newest schema (safe to run again)."""
    migrate_database(settings.effective_database_url)
    shown = create_db_engine(settings.effective_database_url).url.render_as_string(hide_password=True)
    typer.echo(f"Database migrated: {shown}")


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(prompt=True, help="The administrator's e-mail (the login name).")],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="At least 10 characters.")
    ],
    full_name: Annotated[str, typer.Option(help="The administrator's name.")] = "Administrator",
) -> None:
    """Create an administrator account."""
    from pydantic import ValidationError

    from service.errors import DomainError
    from service.users import service
    from service.users.models import Role, UserCreate

    try:
        data = UserCreate(email=email, full_name=full_name, password=password, roles=[Role.admin])
    except ValidationError as error:
        for item in error.errors():
            typer.echo(f"{'.'.join(map(str, item['loc']))}: {item['msg']}", err=True)
        raise typer.Exit(2) from error
    with session_scope(_engine(), write=True) as session:
        try:
            user = service.create(session=session, actor="cli:create-admin", data=data)
        except DomainError as error:
            typer.echo(error.text(), err=True)
            raise typer.Exit(1) from error
    typer.echo(f"Administrator {user.email} created.")


@app.command("demo-data")
def demo_data(
    if_empty: Annotated[bool, typer.Option("--if-empty", help="Only when the database has no users yet.")] = False,
) -> None:
    """Load realistic, fictional demo data for a Bulgarian municipality, with demo logins."""
    from service import demo

    with session_scope(_engine(), write=True) as session:
        if if_empty and not demo.is_empty(session=session):
            typer.echo("The database already has data; demo data not loaded.")
            return
        demo.load(session=session)
    typer.echo("Demo data loaded.")


@app.command()
def scheduler() -> None:
    """Run the scheduled jobs in this process (only one process at a time runs them)."""
    from service.db import check_migrated
    from service.scheduler import SchedulerRunner

    engine = _engine()
    check_migrated(engine)
    runner = SchedulerRunner(engine)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    runner.start()
    typer.echo("Scheduler started; it runs jobs while it holds the leader lock. Ctrl+C stops it.")
    stop.wait()
    runner.stop()


@app.command("audit-verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; report the first row that was tampered with."""
    from service.audit import unsealed_entries, verify_chain

    with session_scope(_engine()) as session:
        checked, bad = verify_chain(session=session)
        unsealed = unsealed_entries(session)
    if bad is not None:
        typer.echo(
            f"TAMPERED: audit row {bad.id} ({bad.action} on {bad.entity} {bad.entity_id or ''}, {bad.at.isoformat()}) "
            f"does not match the chain; {checked} rows before it are intact.",
            err=True,
        )
        raise typer.Exit(1)
    if unsealed:
        typer.echo(
            f"UNSEALED: {unsealed} audit entries wait in audit_pending, never sealed into the chain (was the trigger "
            f"audit_pending_seal off?); the {checked} rows of the chain are intact.",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"Audit chain intact: {checked} rows verified.")


@app.command("public-mirror")
def public_mirror() -> None:
    """Rewrite the static mirror of the public site (pages and feeds) from the database."""
    from service.bulletins import mirror

    mirror.refresh(_engine())
    typer.echo(f"Public mirror written to {mirror.root()}.")


@app.command()
def backup(
    path: Annotated[
        Path | None, typer.Argument(help="The archive to write, or a folder for it. Default: backups/ in the data dir.")
    ] = None,
) -> None:
    """Write one consistent archive of the database and the memoranda and attachments folders."""
    from service import backup as backups

    try:
        made = backups.create(installation=backups.Installation.from_settings(), path=path)
    except (backups.BackupError, OSError) as error:
        typer.echo(f"Backup failed: {error}", err=True)
        raise typer.Exit(1) from None
    for damaged in made.damaged:
        typer.echo(f"WARNING: {damaged} no longer matches its SHA-256 name; it was backed up as it is.", err=True)
    typer.echo(f"Backup written to {made.path}")
    typer.echo(made.manifest.summary())


@app.command()
def restore(path: Annotated[Path, typer.Argument(help="An archive written by `accord backup`.")]) -> None:
    """Restore a backup into an empty installation; a damaged or altered archive changes nothing."""
    from service import backup as backups

    try:
        restored = backups.restore(installation=backups.Installation.from_settings(), archive=path)
    except backups.BackupError as error:
        typer.echo(f"Restore refused: {error}", err=True)
        raise typer.Exit(1) from None
    except OSError as error:
        typer.echo(f"Restore failed: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Restored from {path} (made {restored.manifest.created_at}):")
    typer.echo(restored.manifest.summary())
    if restored.migrated_to:
        typer.echo(f"The schema was migrated from {restored.manifest.alembic_revision} to {restored.migrated_to}.")


def main() -> None:
    app()
