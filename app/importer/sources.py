"""Where records come from: legacy JSON files, a live legacy ``/rest`` API, or the bilingual
CSV/XLSX table that the v1 export writes. Every source yields ``(location, record)`` pairs in the
legacy record shape (or a :class:`Problem` for input that cannot be read), so that one validation
path (``app.loaders.legacy.record_to_row`` + ``app.importer.checks``) serves them all."""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
from sqlalchemy import Connection, Engine, text

from ..loaders import Problem
from ..loaders.legacy import _ADDRESS, _LISTS, _PLAIN, iter_records, organisation_files
from ..serialize import tabular

# legacy /rest path → the file name the lookup loader reads (the 2019 capture names)
HARVEST_LISTS = {
    "sectors": "sectors.json",
    "search/category?activity=*": "categories.json",
    "agreements": "accreditations.json",
    "agreementpowers": "accreditors.json",
    "legalstatus": "legal-status.json",
    "languageoffer": "languages.json",
    "offertypes": "service-types.json",
    "actionzones": "zones.json",
}


@dataclass
class Source:
    """Records plus, for directories and harvests, a directory of lookup lists to load first."""

    name: str
    kind: str
    records: Iterator[tuple[str, dict | Problem]]
    lookups: Path | None = None
    cleanup: list = field(default_factory=list)


def legacy_path(path: Path) -> Source:
    if not path.exists():
        raise FileNotFoundError(path)
    lookups = path if path.is_dir() else None
    return Source(str(path), "legacy", iter_records(organisation_files(path)), lookups)


# ---------------------------------------------------------------- harvest from a live legacy API


async def _harvest(base: str, target: Path, concurrency: int, timeout: float) -> list[tuple[str, dict | Problem]]:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base.rstrip("/") + "/", timeout=timeout, limits=limits) as client:

        async def get(path: str):
            for attempt in range(3):
                try:
                    response = await client.get(path)
                    if response.status_code >= 500:
                        raise httpx.HTTPStatusError("server error", request=response.request, response=response)
                    return response
                except (httpx.TransportError, httpx.HTTPStatusError):
                    if attempt == 2:
                        raise
                    await asyncio.sleep(0.5 * 2**attempt)

        for path, name in HARVEST_LISTS.items():
            response = await get(path)
            if response.status_code == 200:
                (target / name).write_bytes(response.content)
        listing = await get("search/organisation/*")
        if listing.status_code != 200:
            return [(f"{base}/search/organisation/*", Problem(base, "-", "-", listing.status_code, "the organisation list did not answer 200"))]
        ids = [item.get("id") for item in orjson.loads(listing.content) if isinstance(item, dict)]
        gate = asyncio.Semaphore(concurrency)

        async def record(oid) -> tuple[str, dict | Problem]:
            where = f"{base}/organisation/{oid}"
            async with gate:
                try:
                    response = await get(f"organisation/{oid}")
                except httpx.HTTPError as exc:
                    return where, Problem(where, str(oid), "-", None, f"not fetched: {type(exc).__name__}")
            if response.status_code != 200:
                return where, Problem(where, str(oid), "-", response.status_code, "the record did not answer 200")
            try:
                return where, orjson.loads(response.content)
            except orjson.JSONDecodeError as exc:
                return where, Problem(where, str(oid), "-", None, f"invalid JSON: {exc}")

        return await asyncio.gather(*(record(oid) for oid in ids))


def harvest(base_url: str, *, concurrency: int = 8, timeout: float = 30.0) -> Source:
    """Lookup lists and every record of a legacy social.brussels-style ``/rest`` API."""
    tmp = tempfile.TemporaryDirectory(prefix="bruso-harvest-")
    records = asyncio.run(_harvest(base_url, Path(tmp.name), concurrency, timeout))
    return Source(base_url, "harvest", iter(records), Path(tmp.name), [tmp])


# ---------------------------------------------------------------- the bilingual table (CSV/XLSX)

_TABLE_TO_LEGACY = {
    **{col: key for key, col in _PLAIN.items()},
    **{col: key for key, col in _LISTS.items()},
    "enterprise_numbers": "pmRp", "lang_status": "langStatus", "is_interpreting": "isInterpreting",
    "legacy_type": "type", "publication_state": "publicationState",
    "category_ids": "categories", "accreditation_ids": "agreements", "language_ids": "languagesOffer",
    "offer_type_ids": "offerTypes", "action_zone_ids": "actionZones",
}
_TABLE_ADDRESS = {
    **{col: key for key, col in _ADDRESS.items()},
    "postcode": "zipCode", "x_31370": "x", "y_31370": "y", "lon": "lon", "lat": "lat", "address_id": "id",
}


def table_row_to_record(row: dict) -> dict:
    """One table row (``tabular.rows_from_table``) → the legacy record shape."""
    record: dict = {"id": row.get("id")}
    address: dict = {}
    for key, value in row.items():
        if key in _TABLE_ADDRESS:
            address[_TABLE_ADDRESS[key]] = value
        elif key in _TABLE_TO_LEGACY:
            record[_TABLE_TO_LEGACY[key]] = value
        elif key == "legal_status_id":
            record["legalStatus"] = None if value is None else {"id": value}
        elif key in ("last_update", "start_date"):
            record["lastUpdate" if key == "last_update" else "startDate"] = value.strftime("%d/%m/%Y") if isinstance(value, dt.date) else value
    if "publicationState" in record and record["publicationState"] is None:
        del record["publicationState"]
    record["address"] = address
    return record


def _existing(conn: Connection, oid) -> dict:
    """The stored table row of a record (so that a table with fewer columns changes only those)."""
    if not isinstance(oid, int):
        return {}
    from ..search import RECORD_SQL

    row = conn.execute(text(RECORD_SQL.format(public="")), {"ids": [oid]}).mappings().first()
    if row is None:
        return {}
    row = dict(row)
    return {c.key: c.value(row) for c in tabular.COLUMNS if not c.read_only}


def table(path: Path, engine: Engine) -> Source:
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("csv", "xlsx"):
        raise ValueError(f"{path.name}: a table must be .csv or .xlsx")

    def records() -> Iterator[tuple[str, dict | Problem]]:
        problems: list[tabular.TableProblem] = []
        with engine.connect() as conn:
            yield from rows(conn, problems)

    def rows(conn: Connection, problems: list) -> Iterator[tuple[str, dict | Problem]]:
        try:
            for number, row in enumerate(tabular.rows_from_table(path, kind, errors=problems), 2):
                where = f"{path.name}:row {number}"
                if problems:
                    for p in problems:
                        yield where, Problem(path.name, str(row.get("id")), p.key, p.value, f"row {p.row}: {p.reason}")
                    problems.clear()
                    continue
                merged = {**_existing(conn, row.get("id")), **row}
                yield where, table_row_to_record(merged)
        except tabular.TableError as exc:
            yield path.name, Problem(path.name, "-", "-", None, str(exc))

    return Source(str(path), "table", records())
