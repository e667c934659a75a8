"""SQLAlchemy tables. Importing this package registers every table on ``Base.metadata``."""

from .base import SRID, Base, include_object
from .documents import RecordDocument
from .downloads import Download, DownloadChunk
from .operations import ApiKey, AuditEntry, ChangeEvent, GeocodeCache, ImportRun, Quarantine, Tombstone
from .organisation import GEOCODE_STATUSES, LANG_STATUSES, LINKS, PUBLICATION_STATES, Organisation
from .reference import AddressPoint, Commune, Postcode, Quartier, StatisticalSector, Street, StreetLine
from .taxonomy import (
    Accreditation,
    ActionZone,
    Authority,
    Category,
    CategoryTree,
    Language,
    LegalStatus,
    OfferType,
    Sector,
)

__all__ = [name for name in dir() if not name.startswith("_")]
