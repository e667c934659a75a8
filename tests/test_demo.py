"""Tests of the deterministic demo-directory generator (app/demo.py). No database needed."""

from __future__ import annotations

import json
import os
import re
import tracemalloc
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from app.demo import EXTENSION_KEYS, FIRST_GENERATED_ID, generate, iter_records, load_reference

REF = Path(os.environ["BRUSO_REFERENCE_DIR"]) if os.environ.get("BRUSO_REFERENCE_DIR") else (
    Path(__file__).resolve().parents[2] / "shared" / "reference"
)
SB = REF / "socialbrussels-2019"

pytestmark = pytest.mark.skipif(
    not (SB / "organisation-13219.json").is_file(), reason=f"reference data not found under {REF}"
)

N_SAMPLE = 2_000
LON_MIN, LON_MAX, LAT_MIN, LAT_MAX = 4.24, 4.49, 50.76, 50.92
ENTERPRISE = re.compile(r"0[2-9]\d{2}\.\d{3}\.\d{3}")
BOJ = "http://www.ejustice.just.fgov.be/cgi_tsv/tsv_rech.pl?language={lang}&btw={digits}&liste=Liste"
DMY = re.compile(r"(\d{2})/(\d{2})/(\d{2})")


def _json(name: str):
    return json.loads((SB / name).read_text(encoding="utf-8"))


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.strip().lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@pytest.fixture(scope="module")
def legacy() -> dict:
    return _json("organisation-13219.json")


@pytest.fixture(scope="module")
def sample_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "sample.ndjson"
    assert generate(path, N_SAMPLE, 20190502, REF) == N_SAMPLE
    return path


@pytest.fixture(scope="module")
def records(sample_file) -> list[dict]:
    with sample_file.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def generated(records) -> list[dict]:
    return records[1:]


# --- determinism -----------------------------------------------------------------------------------------------------

def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c, short = (tmp_path / f"{n}.ndjson" for n in ("a", "b", "c", "short"))
    assert generate(a, 700, 7, REF) == 700
    assert generate(b, 700, 7, REF) == 700
    assert generate(c, 700, 8, REF) == 700
    assert generate(short, 300, 7, REF) == 300
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    # a shorter run with the same seed is a prefix of the longer one
    assert a.read_bytes().startswith(short.read_bytes())
    assert len(a.read_bytes().splitlines()) == 700


def test_file_matches_iter_records(sample_file):
    lines = sample_file.read_bytes().splitlines()
    for line, record in zip(lines[:50], iter_records(50, 20190502, REF)):
        assert json.loads(line) == record


def test_small_counts(tmp_path):
    assert generate(tmp_path / "zero.ndjson", 0, 1, REF) == 0
    assert (tmp_path / "zero.ndjson").read_bytes() == b""
    assert generate(tmp_path / "one.ndjson", 1, 1, REF) == 1
    (only,) = [json.loads(x) for x in (tmp_path / "one.ndjson").read_bytes().splitlines()]
    assert only["id"] == 13219


def test_records_are_independent_objects():
    first, second, third = iter_records(3, 5, REF)
    second["address"]["streetFr"] = "changed"
    second["telFr"].append("02/000.00.00")
    again = list(iter_records(3, 5, REF))
    assert again[1]["address"]["streetFr"] != "changed"
    assert "02/000.00.00" not in again[1]["telFr"]
    first["address"]["x"] = 0
    assert next(iter(iter_records(1, 5, REF)))["address"]["x"] != 0


# --- shape -------------------------------------------------------------------------------------------------------------

def test_first_record_is_the_real_legacy_record(records, legacy):
    first = records[0]
    assert list(first)[: len(legacy)] == list(legacy)
    assert {k: first[k] for k in legacy} == legacy
    assert list(first)[len(legacy):] == list(EXTENSION_KEYS)
    assert first["agreements"] == [] and first["languagesOffer"] == [] and first["offerTypes"] == []
    assert first["actionZones"] == []
    assert first["publicationState"] == "published"


def test_every_record_has_the_legacy_keys_in_order_then_the_extensions(records, legacy):
    expected = list(legacy) + list(EXTENSION_KEYS)
    address_keys = list(legacy["address"])
    for r in records:
        assert list(r) == expected
        assert list(r["address"]) == address_keys


def test_ids(generated):
    assert [r["id"] for r in generated] == list(range(FIRST_GENERATED_ID, FIRST_GENERATED_ID + N_SAMPLE - 1))


def test_value_types(generated, legacy):
    list_keys = [k for k, v in legacy.items() if isinstance(v, list)]
    for r in generated:
        for k in list_keys:
            assert isinstance(r[k], list), k
            assert all(isinstance(x, str) for x in r[k] if k != "categoriesObject"), k
        assert r["categories"] is None and r["sectorsObjects"] is None and r["type"] is None
        assert isinstance(r["isInterpreting"], bool)
        assert r["langStatus"] in ("FR-NL", "FR", "NL")
        m = DMY.fullmatch(r["lastUpdate"])
        assert m and 17 <= int(m.group(3)) <= 24 and 1 <= int(m.group(2)) <= 12 and 1 <= int(m.group(1)) <= 31
        assert r["startDate"] is None or DMY.fullmatch(r["startDate"])
        assert r["publicationState"] in ("published", "unpublished", "archived")
        for tel in r["telFr"] + r["faxFr"]:
            assert re.fullmatch(r"02/[2-7]\d{2}\.\d{2}\.\d{2}|04[7-9]\d/\d{2}\.\d{2}\.\d{2}", tel), tel
        for email in r["emailFr"] + r["emailNl"]:
            assert re.fullmatch(r"[a-z.]+@[a-z0-9-]+\.be", email), email
        for url in r["websiteOfficialFr"] + r["websiteOfficialNl"]:
            assert re.fullmatch(r"https://www\.[a-z0-9-]+\.be(/fr|/nl)?", url), url


def test_names_are_bilingual_or_monolingual(generated):
    for r in generated:
        fr, nl = r["nameOfficialFr"], r["nameOfficialNl"]
        if r["langStatus"] == "FR-NL":
            assert fr and nl
        elif r["langStatus"] == "FR":
            assert fr and nl is None and r["activitiesNl"] is None and r["nameAlternativeNl"] == []
        else:
            assert nl and fr is None and r["activitiesFr"] is None and r["nameAlternativeFr"] == []


# --- identifiers and lookups -------------------------------------------------------------------------------------------

def test_enterprise_numbers_pass_mod97_and_link_the_official_journal(records):
    seen = []
    for r in records:
        assert len(r["pmRp"]) <= 1
        boj_fr, boj_nl = [], []
        for number in r["pmRp"]:
            assert ENTERPRISE.fullmatch(number), number
            digits = number.replace(".", "")
            assert 97 - int(digits[:8]) % 97 == int(digits[8:]), number
            boj_fr.append(BOJ.format(lang="fr", digits=digits))
            boj_nl.append(BOJ.format(lang="nl", digits=digits))
            seen.append(digits)
        assert r["websiteBelgianOfficialJournalFr"] == boj_fr
        assert r["websiteBelgianOfficialJournalNl"] == boj_nl
    assert len(seen) == len(set(seen)), "enterprise numbers are unique within a file"


def test_lookup_ids_exist(generated):
    categories = {c["id"]: c for c in _json("categories.json")}
    accreditations = {a["id"]: a for a in _json("accreditations.json")}
    languages = {x["id"] for x in _json("languages.json")}
    zones = {z["id"] for z in _json("zones.json")}
    statuses = {s["id"] for s in _json("legal-status.json")}
    offer_types = {t["id"] for t in _json("service-types.json")}
    for r in generated:
        assert 1 <= len(r["categoriesObject"]) <= 4
        ids = [c["id"] for c in r["categoriesObject"]]
        assert len(ids) == len(set(ids))
        for c in r["categoriesObject"]:
            assert list(c) == ["id", "titleFr", "titleNl"]
            assert c["titleFr"] == categories[c["id"]]["titleFr"].strip()
            assert c["titleNl"] == categories[c["id"]]["titleNl"].strip()
        assert len(r["agreements"]) <= 2
        for a in r["agreements"]:
            assert list(a) == ["id", "labelFr", "labelNl", "agreementPowerId"]
            assert a["agreementPowerId"] == accreditations[a["id"]]["agreementPowerId"]
        assert r["languagesOffer"] and all(x["id"] in languages for x in r["languagesOffer"])
        assert all(list(x) == ["id", "nameFr", "nameNl"] for x in r["languagesOffer"])
        assert 1 <= len(r["actionZones"]) <= 2 and all(z["id"] in zones for z in r["actionZones"])
        assert all(list(z) == ["id", "labelFr", "labelNl"] for z in r["actionZones"])
        assert 1 <= len(r["offerTypes"]) <= 2 and all(t["id"] in offer_types for t in r["offerTypes"])
        assert r["legalStatus"] is None or (
            list(r["legalStatus"]) == ["id", "labelFr", "labelNl"] and r["legalStatus"]["id"] in statuses
        )


def test_language_offer_follows_lang_status(generated):
    by_name = {_fold(x["nameFr"]): x["id"] for x in _json("languages.json")}
    fr, nl = by_name["francais"], by_name["neerlandais"]
    for r in generated:
        ids = [x["id"] for x in r["languagesOffer"]]
        assert (fr in ids) == (r["langStatus"] != "NL")
        assert (nl in ids) == (r["langStatus"] != "FR")
        assert len(ids) == len(set(ids))


# --- addresses ---------------------------------------------------------------------------------------------------------

def test_addresses_inside_brussels(records):
    for r in records:
        a = r["address"]
        assert LON_MIN <= a["lon"] <= LON_MAX and LAT_MIN <= a["lat"] <= LAT_MAX, a
        assert isinstance(a["x"], int) and isinstance(a["y"], int)
        assert 138_000 <= a["x"] <= 162_000 and 160_000 <= a["y"] <= 180_000
        assert isinstance(a["zipCode"], int) and 1000 <= a["zipCode"] <= 1210
        assert a["postalCodeFr"] == f"{a['zipCode']} {a['municipalityFr']}"
        assert a["postalCodeNl"] == f"{a['zipCode']} {a['municipalityNl']}"
        assert a["municipalityFr"] == a["municipalityFr"].upper() and a["streetFr"] and a["streetNl"] and a["number"]
        assert a["districtCode"] is None or isinstance(a["districtCode"], str)
        if a["statisticsCode"] is not None:
            assert re.fullmatch(r"21\d{3}[A-Z0-9]{3}[A-Z0-9-]", a["statisticsCode"])
            assert a["statisticsNameFr"] is None or a["statisticsNameFr"].strip()  # a few sectors have no name
        else:
            assert a["statisticsNameFr"] is None and a["statisticsNameNl"] is None


def test_action_zone_usually_matches_the_commune(generated):
    zones = _json("zones.json")
    by_label = {_fold(z["labelFr"]): z["id"] for z in zones}
    matching = 0
    for r in generated:
        commune = by_label.get(_fold(r["address"]["municipalityFr"]))
        zone_ids = [z["id"] for z in r["actionZones"]]
        labels = [_fold(z["labelFr"]) for z in r["actionZones"]]
        if commune in zone_ids or any(label.startswith(_fold(r["address"]["municipalityFr"]) + " - ")
                                      for label in labels):
            matching += 1
    assert matching / len(generated) > 0.6


# --- distributions -----------------------------------------------------------------------------------------------------

def _share(records, predicate) -> float:
    return sum(1 for r in records if predicate(r)) / len(records)


def test_distributions(generated):
    g = generated
    assert 0.15 <= _share(g, lambda r: r["langStatus"] != "FR-NL") <= 0.35
    assert any("CPAS" in (r["nameOfficialFr"] or "") for r in g)
    assert any("OCMW" in (r["nameOfficialNl"] or "") for r in g)
    assert 0.6 <= _share(g, lambda r: r["pmRp"]) <= 0.8
    assert 0.2 <= _share(g, lambda r: r["descriptionFr"] is None and r["descriptionNl"] is None) <= 0.4
    assert 0.12 <= _share(g, lambda r: r["nameAlternativeFr"] or r["nameAlternativeNl"]) <= 0.28
    assert 0.02 <= _share(g, lambda r: r["nameFormerFr"] or r["nameFormerNl"]) <= 0.09
    assert 0.05 <= _share(g, lambda r: r["nameServiceFr"] or r["nameServiceNl"]) <= 0.15
    assert 0.6 <= _share(g, lambda r: len(r["categoriesObject"]) <= 2)
    assert 0.08 <= _share(g, lambda r: len(r["telFr"]) >= 2) <= 0.25
    assert 0.05 <= _share(g, lambda r: not r["emailFr"]) <= 0.15
    assert 0.6 <= _share(g, lambda r: r["websiteOfficialFr"]) <= 0.8
    assert 0.25 <= _share(g, lambda r: r["agreements"]) <= 0.45
    assert 0.02 <= _share(g, lambda r: r["legalStatus"] is None) <= 0.09
    assert 0.04 <= _share(g, lambda r: r["isInterpreting"]) <= 0.12
    assert 0.9 <= _share(g, lambda r: r["publicationState"] == "published") <= 0.98
    assert _share(g, lambda r: r["nameOfficialFr"] and r["nameOfficialFr"] == r["nameOfficialFr"].upper()) > 0.5
    assert _share(g, lambda r: r["telFr"] == r["telNl"] and r["emailFr"] == r["emailNl"]) > 0.9
    asbl = Counter(r["legalStatus"]["labelFr"] for r in g if r["legalStatus"]).most_common(1)[0][0]
    assert "ASBL" in asbl
    communes = Counter(r["address"]["municipalityFr"] for r in g)
    assert len(communes) >= 15
    # categories follow organisationsCount: the popular half is drawn more often than the rare half
    counts = {c["id"]: c["organisationsCount"] for c in _json("categories.json")}
    median = sorted(counts.values())[len(counts) // 2]
    drawn = [c["id"] for r in g for c in r["categoriesObject"]]
    assert _share([counts[i] for i in drawn], lambda n: n > median) > 0.7


def test_names_are_invented_from_the_type_pool(generated):
    from app.demo import ORG_TYPES

    prefixes_fr = tuple(t[0].upper() for t in ORG_TYPES)
    prefixes_nl = tuple(t[1].upper() for t in ORG_TYPES)
    for r in generated:
        if r["nameOfficialFr"]:
            assert r["nameOfficialFr"].upper().startswith(prefixes_fr)
        if r["nameOfficialNl"]:
            assert r["nameOfficialNl"].upper().startswith(prefixes_nl)


# --- streaming ---------------------------------------------------------------------------------------------------------

def test_streaming_memory(tmp_path):
    load_reference(REF)  # lookups and address points: loaded once, not part of the per-record cost
    path = tmp_path / "big.ndjson"
    tracemalloc.start()
    try:
        written = generate(path, 50_000, 3, REF)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert written == 50_000
    assert peak < 60 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    with path.open("rb") as fh:
        assert sum(1 for _ in fh) == 50_000
