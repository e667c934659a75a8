"""GET /v1/organisations/{id}: the full bilingual record, 404 problem+json for unknown and unpublished ids."""

from __future__ import annotations

from sqlalchemy import text

PROBLEM = "application/problem+json"


def test_record_13219_full_and_bilingual(client):
    r = client.get("/v1/organisations/13219")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["id"] == 13219
    assert body["url"] == "http://testserver/v1/organisations/13219"
    assert body["name"] == {
        "nl": "COÖRDINATIE VAN DE SCHAARBEEKSE SOCIALE ACTIE",
        "fr": "COORDINATION DE L'ACTION SOCIALE DE SCHAERBEEK",
    }
    assert body["alternative_names"] == {"nl": ["CSSA"], "fr": ["CASS"]}
    assert body["contact"]["phones"]["fr"] == ["02/435.51.38", "02/435.51.39"]
    assert body["enterprise_numbers"][0]["number"] == "0212.347.945"
    assert body["enterprise_numbers"][0]["belgian_official_journal"]["nl"].endswith("language=nl&btw=0212347945&liste=Liste")
    assert body["legal_status"] == {"id": 932, "label": {"nl": "Openbare dienst - OCMW", "fr": "Service public - CPAS"}}
    assert body["lang_status"] == "FR-NL"
    assert body["last_update"] == "2020-08-28"
    address = body["address"]
    assert address["street"] == {"nl": "Auguste Reyerslaan", "fr": "Boulevard Auguste Reyers"}
    assert address["postcode"] == 1030
    assert address["commune"]["nis_code"] == "21015"
    assert address["commune"]["name"] == {"nl": "Schaarbeek", "fr": "Schaerbeek"}
    assert address["quartier"] == {"code": "87", "name": {"nl": "REYERS", "fr": "REYERS"}}
    assert address["statistical_sector"]["code"] == "21015A77-"
    assert address["lambert72"] == {"x": 152302.0, "y": 171263.0}


def test_generated_records_carry_links(client, loaded):
    with loaded.connect() as conn:
        oid = conn.execute(
            text(
                "SELECT o.id FROM organisation o JOIN organisation_accreditation a ON a.organisation_id = o.id "
                "WHERE o.publication_state = 'published' ORDER BY o.id LIMIT 1"
            )
        ).scalar()
    body = client.get(f"/v1/organisations/{oid}").json()
    assert body["categories"] and all(c["title"]["nl"] and c["title"]["fr"] for c in body["categories"])
    assert body["sectors"] and all(s["inferred"] is True for s in body["sectors"])
    assert body["accreditations"][0]["authority"]["name"]["fr"]
    assert body["offered_languages"] and body["offer_types"] and body["action_zones"]


def test_unknown_id_is_404_problem(client):
    r = client.get("/v1/organisations/999999")
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == 404 and body["title"] == "Not Found" and "999999" in body["detail"]


def test_unpublished_and_archived_records_are_404(client, loaded):
    with loaded.connect() as conn:
        hidden = conn.execute(
            text("SELECT publication_state, min(id) FROM organisation WHERE publication_state <> 'published' GROUP BY 1")
        ).all()
    assert hidden, "the demo directory should contain unpublished records"
    for _state, oid in hidden:
        r = client.get(f"/v1/organisations/{oid}")
        assert r.status_code == 404
        assert r.headers["content-type"] == PROBLEM


def test_bad_id_is_400_problem_not_422(client):
    for bad in ("abc", "0", "-5", "99999999999"):
        r = client.get(f"/v1/organisations/{bad}")
        assert r.status_code == 400, bad
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["errors"][0]["parameter"] == "id"


def test_unknown_path_is_404_problem(client):
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
