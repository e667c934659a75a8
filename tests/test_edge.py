"""Request ids, security headers, JSON access logs and per-client rate limits (app/edge.py)."""

from __future__ import annotations

import json
import logging

from fastapi.testclient import TestClient

from app.edge import JsonFormatter, TokenBuckets
from app.main import create_app


def test_request_id_is_echoed_or_made(client):
    made = client.get("/v1/sectors")
    assert len(made.headers["x-request-id"]) == 32
    assert client.get("/v1/sectors", headers={"X-Request-ID": "portal-42.a"}).headers["x-request-id"] == "portal-42.a"
    hostile = client.get("/healthz", headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert hostile.headers["x-request-id"] != "<script>alert(1)</script>"


def test_security_headers(client):
    data = client.get("/v1/organisations/13219")
    assert data.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in data.headers["content-security-policy"]
    assert data.headers["x-frame-options"] == "DENY"
    problem = client.get("/v1/organisations/999999999")
    assert problem.headers["x-content-type-options"] == "nosniff" and "x-request-id" in problem.headers
    assert "traceback" not in problem.text.lower() and "select" not in problem.text.lower()
    docs = client.get("/docs")
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    assert "script-src 'self'" in docs.headers["content-security-policy"]


def test_rate_limit_answers_429_with_retry_after(settings):
    limited = settings.model_copy(update={"rate_limit_per_minute": 60, "rate_limit_burst": 5})
    with TestClient(create_app(limited)) as c:
        codes = [c.get("/v1/sectors").status_code for _ in range(7)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
        refused = c.get("/v1/sectors")
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert c.get("/healthz").status_code == 200  # probes are never limited


def test_token_bucket_refills_at_the_configured_rate():
    bucket = TokenBuckets(per_minute=60, burst=2)
    assert bucket.take("a", now=0.0) == 0 and bucket.take("a", now=0.0) == 0
    assert bucket.take("a", now=0.0) == 1.0  # one token a second
    assert bucket.take("b", now=0.0) == 0  # per client
    assert bucket.take("a", now=1.0) == 0


def test_access_log_is_one_json_line_with_the_request_id(client):
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    keep = Keep()
    logging.getLogger("bruso.access").addHandler(keep)
    try:
        client.get("/v1/sectors", headers={"X-Request-ID": "trace-me"})
    finally:
        logging.getLogger("bruso.access").removeHandler(keep)
    line = json.loads(JsonFormatter().format(records[-1]))
    assert line["path"] == "/v1/sectors" and line["status"] == 200 and line["request_id"] == "trace-me"
    assert line["duration_ms"] >= 0
