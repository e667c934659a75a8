"""Backups: ``pg_dump -Fc`` of the whole database, and its restore into an empty database.

A backup is one custom-format archive (compressed, restorable table by table, ``pg_restore --list``
readable). It is written next to its destination and renamed into place only once ``pg_dump``
succeeded and the archive reads back, so ``PATH`` is either a complete backup or untouched.

A restore is all-or-nothing (``--single-transaction --exit-on-error``): a broken archive or an
error half-way leaves the target database as it was. Ownership is not restored (``--no-owner``):
the restoring role owns everything, so a backup of one server restores on another. The target
must hold no tables yet (``force=True`` replaces the objects the archive contains instead).

The client tools are those of the server's major version (``/usr/lib/postgresql/<major>/bin``),
or the newest installed one above it: an older ``pg_dump`` refuses a newer server.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL, make_url

# What PostGIS puts in public by itself: a database holding only these is empty.
POSTGIS_RELATIONS = {"spatial_ref_sys", "geometry_columns", "geography_columns", "raster_columns", "raster_overviews"}


class BackupError(RuntimeError):
    """pg_dump/pg_restore failed, or the target is not fit for a restore (message says why)."""


def libpq_url(database_url: str) -> tuple[str, dict[str, str]]:
    """A SQLAlchemy URL (``postgresql+psycopg://u:p@h:5432/db?...``) as a libpq URI without the
    password, plus the environment that carries it (``PGPASSWORD``): never on a command line."""
    url = make_url(database_url)
    env = {"PGPASSWORD": url.password} if url.password else {}
    plain = URL.create("postgresql", username=url.username, host=url.host, port=url.port, database=url.database,
                       query=url.query)
    return plain.render_as_string(hide_password=False), env


def _connect(database_url: str) -> psycopg.Connection:
    conninfo, env = libpq_url(database_url)
    try:
        return psycopg.connect(conninfo, password=env.get("PGPASSWORD"), connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise BackupError(f"cannot connect to the database: {exc}") from None


def server_major(database_url: str) -> int:
    with _connect(database_url) as conn:
        return int(conn.info.server_version) // 10000


def client_tool(name: str, major: int) -> Path:
    """``pg_dump``/``pg_restore`` of the server's major version, else the newest installed above it."""
    candidates = []
    for directory in glob.glob("/usr/lib/postgresql/*/bin"):
        version = Path(directory).parent.name
        if version.isdigit() and (Path(directory) / name).is_file():
            candidates.append((int(version), Path(directory) / name))
    exact = [tool for version, tool in candidates if version == major]
    if exact:
        return exact[0]
    newer = sorted((version, tool) for version, tool in candidates if version > major)
    if newer:
        return newer[-1][1]
    on_path = shutil.which(name)
    if on_path:
        out = subprocess.run([on_path, "--version"], capture_output=True, text=True, check=False).stdout
        found = re.search(r"(\d+)(?:\.\d+)?", out)
        if found and int(found.group(1)) >= major:
            return Path(on_path)
    raise BackupError(f"no {name} for PostgreSQL {major} (install postgresql-client-{major})")


def _run(cmd: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, check=False)
    if result.returncode != 0:
        raise BackupError(f"{what} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")
    return result


def backup(database_url: str, path: str | Path) -> Path:
    """Dump the whole database to ``path`` (custom format, ``pg_dump -Fc``); returns the path.

    Consistent (one snapshot), does not block readers or writers. Raises BackupError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conninfo, env = libpq_url(database_url)
    major = server_major(database_url)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _run([str(client_tool("pg_dump", major)), "--format=custom", "--no-password", f"--file={tmp}",
              f"--dbname={conninfo}"], env, "pg_dump")
        listing = _run([str(client_tool("pg_restore", major)), "--list", str(tmp)], {}, "reading the archive back")
        if "TABLE DATA" not in listing.stdout:
            raise BackupError("the archive holds no table data")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def user_tables(database_url: str) -> list[str]:
    """Tables and views of the public schema, PostGIS's own excepted."""
    with _connect(database_url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1"
        ).fetchall()
    return [name for (name,) in rows if name not in POSTGIS_RELATIONS]


def restore(database_url: str, path: str | Path, *, force: bool = False) -> None:
    """Restore a ``backup()`` archive into ``database_url`` (an existing, empty database).

    One transaction: on any error nothing is restored. ``force=True`` restores into a database
    that already holds tables, dropping and recreating the archive's objects (``--clean``).
    Raises BackupError."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"no backup at {path}")
    existing = user_tables(database_url)
    if existing and not force:
        raise BackupError(
            f"the target database is not empty ({len(existing)} tables, e.g. {', '.join(existing[:3])}): "
            "restore into a new database, or force to replace the archive's objects"
        )
    conninfo, env = libpq_url(database_url)
    tool = client_tool("pg_restore", server_major(database_url))
    _run([str(tool), "--clean", "--if-exists", "--no-owner", "--single-transaction", "--exit-on-error",
          "--no-password", f"--dbname={conninfo}", str(path)], env, "pg_restore")
