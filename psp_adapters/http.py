"""HTTP plumbing shared by the adapters: one pooled `httpx.Client` per connector with explicit
timeouts, and one `request()` that turns every transport or HTTP failure into a typed error."""

from __future__ import annotations

import functools
import http.cookiejar
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from payera.core.nul import storable
from psp_adapters.errors import PspProtocolError, from_response, from_transport_error

log = logging.getLogger("psp_adapters.http")

DEFAULTS: dict[str, float | int] = {
    "connect_timeout": 2.0,  # no connection in 2 s: surely not sent -> PspUnavailableError
    "read_timeout": 10.0,  # no answer in 10 s after sending: unknown -> PspTimeoutError
    "write_timeout": 5.0,
    "pool_timeout": 2.0,
    "max_connections": 100,
    "max_keepalive_connections": 20,
    "keepalive_expiry": 30.0,
}


def option(options: Mapping[str, Any], key: str) -> Any:
    value = options.get(key)
    return DEFAULTS[key] if value is None else value


class _NoCookies(http.cookiejar.CookieJar):
    """A PSP's API is stateless: a cookie it sets is not kept, and so never sent with the next
    call (which may be another merchant's). Also skips parsing each answer for cookies."""

    def extract_cookies(self, response, request) -> None:
        return None

    def set_cookie(self, cookie) -> None:
        return None


def build_http_client(options: Mapping[str, Any], *, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    timeout = httpx.Timeout(
        connect=float(option(options, "connect_timeout")),
        read=float(option(options, "read_timeout")),
        write=float(option(options, "write_timeout")),
        pool=float(option(options, "pool_timeout")),
    )
    limits = httpx.Limits(
        max_connections=int(option(options, "max_connections")),
        max_keepalive_connections=int(option(options, "max_keepalive_connections")),
        keepalive_expiry=float(option(options, "keepalive_expiry")),
    )
    # follow_redirects off: a PSP API never redirects; trust_env off: no proxy surprises; no cookies.
    return httpx.Client(timeout=timeout, limits=limits, follow_redirects=False, trust_env=False, transport=transport,
                        cookies=_NoCookies())


def segment(value: str) -> str:
    """`value` as one path segment of a PSP's URL: a reference the PSP sent us (a webhook's) or one
    we hold can not reach another of its endpoints with `/`, `?`, `#` or `..` in it (dots are
    escaped too: a segment `..` would otherwise be resolved away by the URL's normalisation)."""
    return quote(str(value), safe="").replace(".", "%2E")


class PspHttp:
    def __init__(self, *, connector: str, http: httpx.Client, base_url: str, headers: Mapping[str, str]):
        if not base_url:
            raise ValueError(f"{connector}: base_url is not configured")
        self.connector = connector
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers)
        self._url = functools.lru_cache(maxsize=64)(self._url_of)  # the same paths, parsed once

    def _url_of(self, path: str) -> httpx.URL:
        return httpx.URL(self.base_url + path)

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        headers = dict(self.headers)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        started = time.monotonic()
        # never log bodies or query strings: they carry card data and references
        fields = {"connector": self.connector, "method": method, "path": path}
        try:
            response = self.http.request(method, self._url(path), json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            error = from_transport_error(exc, connector=self.connector)
            ms = round((time.monotonic() - started) * 1000, 1)
            log.warning("psp call failed", extra={**fields, "error": error.code, "ms": ms})
            raise error from exc
        ms = round((time.monotonic() - started) * 1000, 1)
        log.info("psp call", extra={**fields, "status": response.status_code, "ms": ms})
        if response.status_code >= 300:
            raise from_response(response, connector=self.connector)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        response = self.send(method, path, **kwargs)
        try:
            data = response.json()
        except ValueError:
            raise PspProtocolError(
                "answer is not JSON", connector=self.connector, status_code=response.status_code
            ) from None
        if not isinstance(data, dict):
            raise PspProtocolError("answer is not a JSON object", connector=self.connector)
        # JSON writes a NUL only as `\u0000` and a lone surrogate only as `\udXXX`; PostgreSQL
        # stores neither (a whole pair is one character once read, and is kept)
        content = response.content
        if b"\\u0000" in content or b"\\ud" in content or b"\\uD" in content:
            data = storable(data)
        return response.status_code, data
