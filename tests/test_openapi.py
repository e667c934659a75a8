"""The OpenAPI document: valid, 400s instead of 422s, every parameter described, offline /docs, and a
generated Python client that works as developers will use it."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import yaml
from openapi_spec_validator import validate

ROOT = Path(__file__).resolve().parent.parent


def test_document_is_valid_and_never_promises_422(client):
    doc = client.get("/openapi.json").json()
    validate(doc)
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert "422" not in operation["responses"], (path, method)
            if operation.get("parameters"):
                problem = operation["responses"]["400"]["content"]["application/problem+json"]["schema"]
                assert problem == {"$ref": "#/components/schemas/Problem"}
            for parameter in operation.get("parameters", []):
                assert parameter.get("description"), f"{method} {path} {parameter['name']} has no description"


def test_search_parameters_are_all_documented(client):
    """The search routes parse the criteria themselves and list them through openapi_extra
    (app.routers.v1.SEARCH_PARAMETERS): every criterion is documented once per operation."""
    from app.search.criteria import CRITERIA_PARAMETERS

    doc = client.get("/openapi.json").json()
    for path, own in (("/v1/organisations", {"sort", "limit", "cursor", "lang", "f", "fields"}),
                      ("/v1/stats", {"group_by", "lang", "f"}), ("/rest/search/organisation", set())):
        names = [p["name"] for p in doc["paths"][path]["get"]["parameters"]]
        assert CRITERIA_PARAMETERS | own <= set(names), path
        assert len(names) == len(set(names)), path


def test_docs_work_offline(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    for asset in ("/static/swagger-ui/swagger-ui-bundle.js", "/static/swagger-ui/swagger-ui.css"):
        assert asset in page.text
        assert client.get(asset).status_code == 200


def test_generated_python_client_searches_and_reads(client, tmp_path):
    spec = tmp_path / "openapi.json"
    spec.write_bytes(client.get("/openapi.json").content)
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"project_name_override": "bruso-client", "package_name_override": "bruso_client", "post_hooks": []}))
    generator = Path(sys.executable).parent / "openapi-python-client"
    run = subprocess.run(
        [str(generator), "generate", "--path", str(spec), "--config", str(config), "--meta", "setup", "--output-path", str(tmp_path / "client")],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "warning" not in (run.stdout + run.stderr).lower(), run.stdout + run.stderr
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(tmp_path / "client")],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    sys.path.insert(0, str(target))
    try:
        bruso_client = importlib.import_module("bruso_client")
        search = importlib.import_module("bruso_client.api.v1.search_organisations")
        detail = importlib.import_module("bruso_client.api.v1.get_organisation")
        api = bruso_client.Client(base_url="http://testserver")
        api.set_httpx_client(client)  # the TestClient is an httpx.Client talking to the app

        page = search.sync(client=api, commune=["21015"], limit="5", lang=importlib.import_module("bruso_client.models").SearchOrganisationsLangType0("fr"))
        assert page.number_matched > 0 and 0 < len(page.items) <= 5
        assert all(item.address.commune.nis_code == "21015" for item in page.items)
        record = detail.sync(client=api, id=13219)
        assert record.id == 13219 and record.address.postcode == 1030
        missing = detail.sync_detailed(client=api, id=999999)
        assert missing.status_code == 404
    finally:
        sys.path.remove(str(target))
        for name in [m for m in sys.modules if m.startswith("bruso_client")]:
            del sys.modules[name]
