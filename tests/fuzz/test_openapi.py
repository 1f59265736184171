"""The OpenAPI document of the admin HTTP API (fulfil/openapi.json): valid OpenAPI 3.1, and exactly the routes
the aiohttp app registers, with the token asked for exactly where the server asks for it.

Schemathesis holds the live daemon to it (test_schemathesis_live.py); this file keeps it honest statically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from openapi_spec_validator import validate
from openapi_spec_validator.validation.validators import OpenAPIV31SpecValidator

from fulfil import admin
from fulfil.admin import AdminServer, is_public, openapi_document
from fulfil.config import config_from_data

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def _document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(openapi_document())
    return doc


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def _app_routes() -> set[tuple[str, str]]:
    config = config_from_data({}, environ={})
    server = AdminServer(cast(Any, None), cast(Any, None), lambda: config, environ={})
    routes: set[tuple[str, str]] = set()
    for resource in server.app().router.resources():
        info = resource.get_info()
        if "app" in info:  # the console (/console/): HTML pages with their own login, not this JSON API
            continue
        path = info.get("path") or info["formatter"]
        for route in resource:
            if route.method != "HEAD":  # aiohttp adds HEAD beside every GET
                routes.add((route.method, path))
    return routes


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = _document()
    assert doc["openapi"].startswith("3.1")
    validate(doc, cls=OpenAPIV31SpecValidator)


def test_the_packaged_document_is_the_file_in_the_source_tree() -> None:
    assert openapi_document() == (Path(admin.__file__).parent / "openapi.json").read_bytes()
    assert "openapi.json" in (ROOT / "pyproject.toml").read_text(encoding="utf-8")  # package data


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    assert set(_operations(_document())) == _app_routes()


def test_the_token_is_asked_for_exactly_where_the_server_asks_for_it() -> None:
    doc = _document()
    assert doc["security"] == [{"bearer": []}]
    for (method, path), operation in _operations(doc).items():
        public = is_public(path)
        where = f"{method} {path}"
        assert (operation.get("security") == []) is public, where
        assert ("401" in operation["responses"]) is not public, where


def test_operations_have_ids_and_every_body_is_capped() -> None:
    operations = _operations(_document())
    ids = [operation["operationId"] for operation in operations.values()]
    assert len(ids) == len(set(ids))
    for (method, path), operation in operations.items():
        if "requestBody" in operation:
            assert "413" in operation["responses"], f"{method} {path}"
