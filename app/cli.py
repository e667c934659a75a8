"""The ``bruso`` command line (typer)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .settings import get_settings

app = typer.Typer(help="Bruso: the open-data service of the Brussels social map.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
load_app = typer.Typer(help="Load reference layers and legacy social.brussels data.", no_args_is_help=True)
demo_app = typer.Typer(help="The demo directory.", no_args_is_help=True)
import_app = typer.Typer(help="Import records (checked, geocoded, quarantined when bad).", no_args_is_help=True)
urbis_app = typer.Typer(help="The URBIS geocoding service.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of the write side (/admin).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(import_app, name="import")
app.add_typer(urbis_app, name="urbis")
app.add_typer(load_app, name="load")
app.add_typer(demo_app, name="demo")
console = Console(stderr=True)
ROOT = Path(__file__).resolve().parent.parent


def _alembic_config():
    from alembic.config import Config

    return Config(str(ROOT / "alembic.ini"))


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from alembic import command

    command.upgrade(_alembic_config(), revision)
    console.print(f"database at [bold]{revision}[/]")
    if revision == "head":  # documents of records stored before 0006, or left stale
        from .db import make_sync_engine
        from .search import documents

        engine = make_sync_engine(get_settings())
        with engine.begin() as conn:
            built = documents.refresh(conn)
        engine.dispose()
        if built:
            console.print(f"documents built for {built} records")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION ('base' empties the schema)."""
    from alembic import command

    command.downgrade(_alembic_config(), revision)


def _report(title: str, counts: dict, seconds: float) -> None:
    table = Table(title=f"{title} ({seconds:.1f} s)")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in counts.items():
        table.add_row(key, ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value))
    console.print(table)


def _run_load(title: str, fn) -> None:
    from .db import make_sync_engine
    from .loaders import LoadError

    from .downloads import build_downloads

    engine = make_sync_engine(get_settings())
    started = time.perf_counter()
    try:
        with engine.begin() as conn:
            counts = fn(conn)
        _report(title, counts, time.perf_counter() - started)
        console.print(str(build_downloads(engine)))  # the bulk files follow the data, off the request path
    except LoadError as exc:
        console.print(f"[red]{title}: rejected[/] — {exc}")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


@load_app.command("reference")
def load_reference(
    directory: Annotated[Optional[Path], typer.Argument(help="Reference directory (default BRUSO_REFERENCE_DIR)")] = None,
) -> None:
    """Communes, quartiers, statistical sectors, postcodes, streets and address points."""
    from .loaders.reference import load_reference as load

    directory = directory or get_settings().reference_dir
    _run_load(f"reference layers from {directory}", lambda conn: load(conn, directory))


@load_app.command("legacy")
def load_legacy(
    path: Annotated[Optional[Path], typer.Argument(help="Directory of legacy JSON, or one organisation file")] = None,
) -> None:
    """Legacy lookup lists and organisation records (all or nothing)."""
    from .loaders.legacy import load_legacy as load

    path = path or get_settings().reference_dir / "socialbrussels-2019"
    _run_load(f"legacy data from {path}", lambda conn: load(conn, path))


@demo_app.command("generate")
def demo_generate(
    count: Annotated[int, typer.Option(help="Number of records, the real record 13219 included")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same file")] = 1,
    out: Annotated[Path, typer.Option(help="NDJSON file to write")] = Path("var/demo/organisations.ndjson"),
) -> None:
    """Write a realistic, fictional demo directory in the legacy JSON shape (streamed)."""
    from .demo import generate

    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    written = generate(out, count, seed, get_settings().reference_dir)
    seconds = time.perf_counter() - started
    console.print(f"wrote {written} records to {out} in {seconds:.1f} s ({written / max(seconds, 1e-9):,.0f} records/s)")


@load_app.command("demo")
def load_demo(
    count: Annotated[int, typer.Option()] = 5000,
    seed: Annotated[int, typer.Option()] = 1,
) -> None:
    """Reference layers, legacy lookup lists, then a generated demo directory: everything the run command needs."""
    from .demo import iter_records
    from .loaders.legacy import load_lookups, load_organisations
    from .loaders.reference import load_reference as load_ref

    settings = get_settings()

    def load_all(conn) -> dict:
        counts = load_ref(conn, settings.reference_dir)
        counts.update(load_lookups(conn, settings.reference_dir / "socialbrussels-2019"))
        records = (("demo", rec) for rec in iter_records(count, seed, settings.reference_dir))
        counts["organisations"] = load_organisations(conn, records).__dict__
        return counts

    _run_load(f"demo directory ({count} records, seed {seed})", load_all)


GeocodeMode = typer.Option(help="Geocode through URBIS: missing (records without a point), all, or none")


@contextlib.contextmanager
def closing_after(close):
    try:
        yield
    finally:
        close()


def _import(source_factory, *, geocode: str, urbis: str | None, dry_run: bool, delete_missing: bool) -> None:
    """Run an import with a progress bar; print the summary and the rejected records; exit 1 when
    anything was rejected."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .db import make_sync_engine
    from .importer.geocoding import make_prepare
    from .importer.run import refresh_downloads, run_import
    from .loaders import LoadError

    settings = get_settings()
    if geocode not in ("missing", "all", "none"):
        raise typer.BadParameter("--geocode must be missing, all or none")
    engine = make_sync_engine(settings)
    try:
        source = source_factory(engine)
        prepare, stats = make_prepare(settings, engine, geocode, urbis)
        closing = prepare.close if prepare is not None else (lambda: None)
        with closing_after(closing), Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task(f"importing {source.name}", total=None)
            try:
                result = run_import(
                    engine, source, prepare=prepare, dry_run=dry_run, delete_missing=delete_missing,
                    actor="cli", progress=lambda n: bar.advance(task, n),
                    after_commit=lambda: refresh_downloads(engine),
                )
            except LoadError as exc:
                console.print(f"[red]import failed[/] — {exc}")
                raise typer.Exit(2) from None
    finally:
        engine.dispose()
    r = result.report
    table = Table(title=f"import run {result.run_id}: {result.status} in {result.duration_s:.1f} s "
                        f"({result.records_per_s:,.0f} records/s)")
    for column in ("read", "created", "updated", "unchanged", "deleted", "rejected", "pending", "geocoded"):
        table.add_column(column, justify="right")
    table.add_row(*(str(getattr(r, c)) for c in ("read", "created", "updated", "unchanged", "deleted", "rejected", "pending", "geocoded")))
    console.print(table)
    if stats:
        console.print(f"URBIS: {stats()}")
    if result.rejected:
        problems = Table(title=f"{len(result.rejected)} rejected record(s), kept in the quarantine (run {result.run_id})")
        for column in ("where", "record", "field", "value", "reason"):
            problems.add_column(column, overflow="fold")
        for item in result.rejected[:200]:
            for p in item.problems:
                problems.add_row(item.location, item.record_id or "-", p.field, repr(p.value)[:60], p.reason)
        console.print(problems)
        raise typer.Exit(1)


@import_app.command("legacy")
def import_legacy(
    source: Annotated[str, typer.Argument(help="Directory or file of legacy JSON, or the base URL of a legacy /rest API")],
    geocode: Annotated[str, GeocodeMode] = "missing",
    urbis: Annotated[Optional[str], typer.Option(help="URBIS base URL (default BRUSO_URBIS_URL)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and report; write nothing but the run record")] = False,
    delete_missing: Annotated[bool, typer.Option("--delete-missing", help="The source is the whole directory: delete what it lacks")] = False,
) -> None:
    """Legacy social.brussels JSON: a directory, a file, or a live API (harvested)."""
    from .importer import sources

    def factory(engine):
        if source.startswith(("http://", "https://")):
            return sources.harvest(source)
        return sources.legacy_path(Path(source))

    _import(factory, geocode=geocode, urbis=urbis, dry_run=dry_run, delete_missing=delete_missing)


@import_app.command("table")
def import_table(
    path: Annotated[Path, typer.Argument(help="A .csv or .xlsx file in the export's columns")],
    geocode: Annotated[str, GeocodeMode] = "missing",
    urbis: Annotated[Optional[str], typer.Option(help="URBIS base URL (default BRUSO_URBIS_URL)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
) -> None:
    """The bilingual table the v1 CSV/XLSX export writes (export → edit → import round-trips)."""
    from .importer import sources

    _import(lambda engine: sources.table(path, engine), geocode=geocode, urbis=urbis, dry_run=dry_run, delete_missing=False)


@app.command("geocode")
def geocode_pending(
    pending: Annotated[bool, typer.Option("--pending", help="Records whose geocoding is pending (URBIS was down)")] = True,
    urbis: Annotated[Optional[str], typer.Option(help="URBIS base URL (default BRUSO_URBIS_URL)")] = None,
) -> None:
    """Geocode the records left pending by an import; exit 1 if some stay pending."""
    from .db import make_sync_engine
    from .importer.run import refresh_downloads
    from .importer.geocoding import geocode_pending as run

    engine = make_sync_engine(get_settings())
    try:
        report = run(engine, get_settings(), urbis)
        refresh_downloads(engine)
    finally:
        engine.dispose()
    console.print(f"geocoded {report.geocoded}, still pending {report.pending}, not found {report.read - report.geocoded - report.pending}")
    if report.pending:
        raise typer.Exit(1)


@urbis_app.command("serve")
def urbis_serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8765,
    workers: Annotated[int, typer.Option()] = 1,
) -> None:
    """A local URBIS Localize twin answering from the reference streets and address points."""
    from .geo.urbis_server import serve as run

    console.print(f"URBIS twin on [bold]http://{host}:{port}/Rest/Localize/[/]")
    run(get_settings().database_url, host, port, workers=workers)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who holds the key (shown in the audit log)")],
    scope: Annotated[list[str], typer.Option("--scope", help="import, edit or admin (repeatable)")],
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from .auth import create_key
    from .db import make_sync_engine

    engine = make_sync_engine(get_settings())
    try:
        key = create_key(engine, name, scope)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    finally:
        engine.dispose()
    console.print(f"key for [bold]{name}[/] ({', '.join(scope)}), shown once:")
    print(key)


@keys_app.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="The key's prefix (or the whole key)")]) -> None:
    """Revoke a key at once (every request checks the key)."""
    from .auth import revoke_key
    from .db import make_sync_engine

    engine = make_sync_engine(get_settings())
    try:
        if not revoke_key(engine, prefix):
            console.print(f"[red]no active key with prefix {prefix}[/]")
            raise typer.Exit(1)
    finally:
        engine.dispose()
    console.print(f"revoked {prefix}")


@keys_app.command("list")
def keys_list() -> None:
    """Keys (names, prefixes, scopes, dates; never the secret)."""
    from .auth import list_keys
    from .db import make_sync_engine

    engine = make_sync_engine(get_settings())
    try:
        keys = list_keys(engine)
    finally:
        engine.dispose()
    table = Table(title="API keys")
    for column in ("name", "prefix", "scopes", "created_at", "revoked_at"):
        table.add_column(column)
    for k in keys:
        table.add_row(k["name"], k["prefix"], ", ".join(k["scopes"]), str(k["created_at"]), str(k["revoked_at"] or ""))
    console.print(table)


@app.command("backup")
def backup(path: Annotated[Path, typer.Argument(help="Archive to write (pg_dump custom format)")]) -> None:
    """Dump the whole database (records, links, runs, quarantine, feed, keys, audit)."""
    from .backup import BackupError
    from .backup import backup as run

    try:
        written = run(get_settings().database_url, path)
    except BackupError as exc:
        console.print(f"[red]backup failed[/] — {exc}")
        raise typer.Exit(1) from None
    console.print(f"wrote {written} ({written.stat().st_size:,} bytes)")


@app.command("restore")
def restore(
    path: Annotated[Path, typer.Argument(help="Archive written by bruso backup")],
    force: Annotated[bool, typer.Option("--force", help="Replace a database that already has tables")] = False,
) -> None:
    """Restore an archive into BRUSO_DATABASE_URL (an empty database unless --force), in one transaction."""
    from .backup import BackupError
    from .backup import restore as run

    try:
        run(get_settings().database_url, path, force=force)
    except BackupError as exc:
        console.print(f"[red]restore failed[/] — {exc}")
        raise typer.Exit(1) from None
    console.print(f"restored {path}")


downloads_app = typer.Typer(help="Precomputed bulk downloads.", no_args_is_help=True)
app.add_typer(downloads_app, name="downloads")


@downloads_app.command("build")
def downloads_build(force: Annotated[bool, typer.Option("--force", help="Rebuild even if the data did not change")] = False) -> None:
    """Rebuild the bulk files (GeoJSON, CSV, XLSX, NDJSON, taxonomy, districts) if the data changed."""
    from .db import make_sync_engine
    from .downloads import build_downloads

    engine = make_sync_engine(get_settings())
    try:
        console.print(str(build_downloads(engine, force=force)))
    finally:
        engine.dispose()


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option()] = 1,
) -> None:
    """Run the API with uvicorn."""
    import signal
    import sys

    import uvicorn

    # uvicorn re-raises SIGTERM after its graceful shutdown; a clean stop should exit 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    console.print(f"Bruso listening on [bold]http://{host}:{port}[/] (docs at /docs)")
    uvicorn.run("app.main:app", host=host, port=port, workers=workers, log_level="warning", access_log=False,
                timeout_graceful_shutdown=30)  # access lines come from app.edge as JSON


if __name__ == "__main__":
    app()
