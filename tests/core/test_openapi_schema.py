"""The OpenAPI schema at /v1/schema/ describes every /v1/ endpoint, validly and without warnings."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.urls import get_resolver
from django.urls.resolvers import URLPattern, URLResolver

ROOT = Path(__file__).resolve().parents[2]


def v1_routes(resolver=None, prefix="") -> set[str]:
    routes: set[str] = set()
    for entry in (resolver or get_resolver()).url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            routes |= v1_routes(entry, pattern)
        elif isinstance(entry, URLPattern) and pattern.startswith("v1/") and pattern not in {"v1/schema/", "v1/docs/"}:
            routes.add("/" + pattern.replace("<str:", "{").replace(">", "}"))
    return routes


def test_schema_is_valid_with_no_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    paths = set(yaml.safe_load(out.read_text())["paths"])
    missing = v1_routes() - paths
    assert not missing, f"endpoints missing from the schema: {sorted(missing)}"


@pytest.mark.django_db
def test_schema_and_docs_are_served(client):
    assert client.get("/v1/schema/").status_code == 200
    docs = client.get("/v1/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content
