"""The OpenAPI document and offline API docs.

FastAPI documents a 422 on every operation; Bruso never answers 422 (bad input is a 400
problem+json), so those are replaced by the RFC 9457 Problem schema. ``/docs`` serves Swagger UI from
the installed ``swagger-ui-bundle`` package, so it works with no internet.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from starlette.staticfiles import StaticFiles

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "example": "about:blank"},
        "title": {"type": "string", "example": "Bad Request"},
        "status": {"type": "integer", "example": 400},
        "detail": {"type": "string", "example": "radius: must be greater than 0 and at most 50000 metres"},
        "instance": {"type": "string", "example": "/v1/organisations"},
        "parameter": {"type": "string", "description": "The query parameter at fault"},
    },
    "additionalProperties": True,
}
BAD_REQUEST = {
    "description": "Bad request: a parameter is unknown or malformed; the problem names it",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def build(app: FastAPI) -> dict:
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None or operation.get("parameters"):
                responses.setdefault("400", BAD_REQUEST)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    for media in response.get("content", {}).values():
                        media.setdefault("schema", {"$ref": "#/components/schemas/Problem"})
    return doc


def install(app: FastAPI) -> None:
    import swagger_ui_bundle

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount("/static/swagger-ui", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} — API documentation",
            swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
        )
