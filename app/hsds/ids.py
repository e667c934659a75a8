"""Deterministic HSDS identifiers: the same UUIDs in the NL and the FR API, on every call.

* organization = ``organisation.uuid`` (itself uuid5 of ``organisation:<legacy id>``);
* service, location and service_at_location of an activity place = the organisation UUID XOR a
  fixed per-type mask. The mask leaves the version and variant bits alone, so the result is still
  a valid RFC 9562 version-5 UUID, and the mapping is its own inverse: the API maps a service id
  back to the organisation UUID without a table or a scan (one lookup on the unique uuid index);
* everything nested in a record (phones, contacts, addresses, attributes, …) = uuid5 of its owner's
  id and a name (``phone:0``, ``attribute:<term id>``…);
* taxonomies and taxonomy terms = uuid5 of ``NAMESPACE`` and ``taxonomy:<kind>`` /
  ``term:<kind>:<code>`` (kind: sector, category, authority, accreditation, offer_type, commune,
  quartier, statistical_sector; code: the legacy id, NIS code, quartier or sector code).
"""

from __future__ import annotations

import hashlib
import uuid
from functools import lru_cache

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://bruso.brussels/hsds/")

_KEEP = (0xF << 76) | (0x3 << 62)  # version nibble and variant bits
_ALL = (1 << 128) - 1
RECORD_KINDS = ("service", "location", "service_at_location")
_MASKS = {kind: uuid.uuid5(NAMESPACE, f"mask:{kind}").int & ~_KEEP & _ALL for kind in RECORD_KINDS}


def record_id(organisation_uuid: uuid.UUID | str, kind: str) -> uuid.UUID:
    """The id of the ``kind`` (service, location, service_at_location) of an activity place."""
    value = organisation_uuid if isinstance(organisation_uuid, uuid.UUID) else uuid.UUID(str(organisation_uuid))
    return uuid.UUID(int=value.int ^ _MASKS[kind])


def organisation_uuid(record: uuid.UUID, kind: str) -> uuid.UUID:
    """Inverse of ``record_id``: the organisation UUID behind a service/location/… id."""
    return uuid.UUID(int=record.int ^ _MASKS[kind])


def child_id(owner: uuid.UUID | str, name: str) -> str:
    """A nested object's id: uuid5 of its owner's id and a name unique within that owner.

    ``str(uuid.uuid5(owner, name))`` computed straight from the bytes (records have dozens of
    nested objects: parsing and building UUID objects dominated the shaping time).
    """
    owner_bytes = owner.bytes if isinstance(owner, uuid.UUID) else bytes.fromhex(owner.replace("-", ""))
    digest = bytearray(hashlib.sha1(owner_bytes + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@lru_cache(maxsize=64)
def taxonomy_id(kind: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"taxonomy:{kind}"))


@lru_cache(maxsize=1 << 16)  # pure; a few thousand terms
def term_id(kind: str, code: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"term:{kind}:{code}"))


def parse_uuid(text: str) -> uuid.UUID | None:
    """A UUID in its canonical 8-4-4-4-12 form (any case), else None."""
    text = text.strip()
    if len(text) != 36:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
