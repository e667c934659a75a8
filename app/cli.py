"""The ``bruso`` command line (typer)."""

from __future__ import annotations

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
app.add_typer(db_app, name="db")
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

    engine = make_sync_engine(get_settings())
    started = time.perf_counter()
    try:
        with engine.begin() as conn:
            counts = fn(conn)
    except LoadError as exc:
        console.print(f"[red]{title}: rejected[/] — {exc}")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    _report(title, counts, time.perf_counter() - started)


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


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option()] = 1,
) -> None:
    """Run the API with uvicorn."""
    import uvicorn

    console.print(f"Bruso listening on [bold]http://{host}:{port}[/] (docs at /docs)")
    uvicorn.run("app.main:app", host=host, port=port, workers=workers, log_level="info")


if __name__ == "__main__":
    app()
