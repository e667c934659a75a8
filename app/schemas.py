"""Response schemas for the OpenAPI document (the handlers serialise with orjson for speed; these
models describe the same JSON so that generated clients get typed objects).

Without ``lang`` a label is a ``{"nl", "fr"}`` object; with ``lang=nl|fr`` it is a string (and
``lang_fallbacks`` lists the fields served in the other language). Fields are optional because
``fields=`` selects them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Bilingual(BaseModel):
    nl: str | None = None
    fr: str | None = None


class BilingualList(BaseModel):
    nl: list[str] = []
    fr: list[str] = []


Label = Bilingual | str | None
Labels = BilingualList | list[str]


class Ref(BaseModel):
    id: int
    label: Label = None


class Titled(BaseModel):
    id: int
    title: Label = None


class SectorRef(Titled):
    inferred: bool = Field(description="true when Bruso derived the sector from the inferred thematic tree")


class NamedRef(BaseModel):
    id: int
    name: Label = None


class AccreditationRef(Ref):
    authority: NamedRef | None = None


class ActionZoneRef(Ref):
    kind: str


class Websites(BaseModel):
    official: Labels
    unofficial: Labels
    info: Labels


class Contact(BaseModel):
    phones: Labels
    faxes: Labels
    emails: Labels
    websites: Websites


class EnterpriseNumber(BaseModel):
    number: str = Field(examples=["0212.347.945"])
    belgian_official_journal: Label


class Commune(BaseModel):
    nis_code: str | None
    name: Label
    name_as_given: Label


class CodedPlace(BaseModel):
    code: str | None
    name: Label


class Lambert72(BaseModel):
    x: float
    y: float


class Wgs84(BaseModel):
    lon: float
    lat: float


class Address(BaseModel):
    street: Label
    number: str | None
    building_number: str | None
    box: str | None
    postcode: int | None
    commune: Commune
    quartier: CodedPlace
    statistical_sector: CodedPlace
    lambert72: Lambert72 | None
    wgs84: Wgs84 | None
    remark: Label


class Organisation(BaseModel):
    id: int = Field(description="Legacy id, stable and public")
    uuid: str | None = None
    url: str | None = Field(default=None, description="Stable public URL of this record")
    name: Label = None
    alternative_names: Labels | None = None
    former_names: Labels | None = None
    service_names: Labels | None = None
    description: Label = None
    activities: Label = None
    target_public: Label = None
    opening_hours: Label = None
    remark: Label = None
    access_modes: Labels | None = None
    publications: Labels | None = None
    other_accreditations: Labels | None = None
    subsidies: Labels | None = None
    contact: Contact | None = None
    enterprise_numbers: list[EnterpriseNumber] | None = None
    legal_status: Ref | None = None
    lang_status: str | None = Field(default=None, description="FR, NL or FR-NL")
    is_interpreting: bool | None = None
    type: str | None = None
    sectors: list[SectorRef] | None = None
    categories: list[Titled] | None = None
    accreditations: list[AccreditationRef] | None = None
    offered_languages: list[NamedRef] | None = None
    offer_types: list[Ref] | None = None
    action_zones: list[ActionZoneRef] | None = None
    start_date: str | None = None
    last_update: str | None = None
    address: Address | None = None
    created_at: str | None = None
    updated_at: str | None = None
    distance_m: float | None = Field(default=None, description="Metres from near=, when given")
    score: float | None = Field(default=None, description="Relevance, when q is given")
    lang: str | None = None
    lang_fallbacks: dict[str, str] | None = None


class PageLinks(BaseModel):
    self: str
    next: str | None = None


class OrganisationPage(BaseModel):
    items: list[Organisation]
    numberMatched: int
    numberReturned: int
    links: PageLinks
    next_cursor: str | None = None


class ChangeEvent(BaseModel):
    id: int = Field(description="Legacy id of the activity place")
    uuid: str
    type: Literal["created", "updated", "deleted"] = Field(description="deleted also covers unpublished and merged records")
    at: str = Field(description="When the change was written (ISO 8601)")
    href: str = Field(description="The record in /v1 (answers 410 Gone once deleted)")


class ChangeLinks(BaseModel):
    self: str
    next: str


class ChangePage(BaseModel):
    events: list[ChangeEvent]
    next: str = Field(description="Opaque token: pass it as since= to continue; unchanged when nothing is new")
    links: ChangeLinks
