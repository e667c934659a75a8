"""All configuration in one pydantic-settings class (environment prefix ``BRUSO_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_reference_dir() -> Path:
    """``../shared/reference`` beside the checkout when present, else ``./reference``."""
    for candidate in (_REPO_ROOT.parent / "shared" / "reference", Path.cwd().parent / "shared" / "reference"):
        if candidate.is_dir():
            return candidate
    return Path("reference")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BRUSO_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="postgresql+psycopg://postgres@127.0.0.1:5433/bruso",
        validation_alias="BRUSO_DATABASE_URL",
        description="SQLAlchemy URL of the primary database (DATABASE_URL is accepted too).",
    )
    database_replica_urls: list[str] = Field(default_factory=list, description="Read replicas for public GETs.")
    reference_dir: Path = Field(default_factory=_default_reference_dir)
    public_base_url: str | None = Field(default=None, description="Public base URL for links; default: the request's own")
    pool_size: int = Field(default=16, description="Pooled connections per process (as many again may overflow)")
    pool_timeout_s: float = 1.0
    statement_timeout_ms: int = 5000
    default_limit: int = 50
    max_limit: int = 1000
    max_radius_m: int = 50_000
    urbis_url: str = Field(
        default="http://127.0.0.1:8765",
        description="Base URL of the URBIS Localize service ({base}/Rest/Localize/...): the regional "
        "one, or `bruso urbis serve` (the local, reference-data twin).",
    )
    urbis_concurrency: int = 8
    urbis_timeout_s: float = 5.0
    rate_limit_per_minute: float = Field(default=1200, description="Public GETs per client and minute (0: no limit)")
    rate_limit_burst: int = Field(default=600, description="Requests a client may make at once before the rate applies")
    trusted_proxies: list[str] = Field(default_factory=list, description="Addresses whose X-Forwarded-For names the client")
    log_level: str = "INFO"
    data_version_ttl_s: float = Field(default=1.0, description="How long a process reuses the data version behind Last-Modified (0: ask every time)")
    response_cache_mb: float = Field(
        default=64.0,
        description="Per-process memory (MiB) for recent 200 answers of the public GET surfaces, keyed by the data "
        "version, path, query and the headers an answer varies on (least recently used evicted). 0: off",
    )
    response_cache_max_age_s: float = Field(
        default=60.0,
        description="Longest a remembered answer is reused even when the data version did not move (lookup-list "
        "label edits, which do not change it): no longer than the shortest max-age the answers advertise to "
        "shared caches (60 s)",
    )
    download_cache_mb: float = Field(
        default=64.0,
        description="Per-process memory cap (MiB) of the bulk-download bytes kept in memory (raw and gzip, keyed by "
        "their SHA-256, least recently used evicted first); files larger than the cap stream from the database. 0: no cache",
    )
    cursor_secret: str = Field(
        default="bruso-dev-cursor-secret",
        description="HMAC key signing paging cursors; set the same value on every replica.",
    )

    @field_validator("database_url", mode="before")
    @classmethod
    def _accept_plain_postgres_urls(cls, value: str) -> str:
        # DATABASE_URL as Heroku/Docker write it ("postgres://" or "postgresql://") → psycopg 3 driver.
        for prefix in ("postgres://", "postgresql://"):
            if isinstance(value, str) and value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix):]
        return value


@lru_cache
def get_settings() -> Settings:
    import os

    if "BRUSO_DATABASE_URL" not in os.environ and os.environ.get("DATABASE_URL"):
        return Settings(BRUSO_DATABASE_URL=os.environ["DATABASE_URL"])
    return Settings()
