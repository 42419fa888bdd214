"""`get_adapter(name)`: the configured adapter of a connector, built once per process.

`settings.PSP_CONNECTORS[name]` gives the class (`ADAPTER`, a dotted path) and `OPTIONS`
(base_url, timeouts, pool sizes; `in_process: True` runs the sandbox PSP inside this process,
for benchmarks and fast tests); credentials come from the secrets backend at `psp/<name>`
(`{"api_key": …, "webhook_secret": …}`, the secret may be a list during a roll), never from
settings. The cache is cleared when PSP_CONNECTORS or SECRETS_BACKEND change (tests) and by
`adapters_reset()` (after rotating credentials).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from payera.secrets.backends.base import SecretNotFoundError
from payera.secrets.services import secret_get
from psp_adapters.errors import PspConfigurationError
from psp_adapters.http import build_http_client
from psp_adapters.port import PspAdapter


def connector_names() -> list[str]:
    return list(settings.PSP_CONNECTORS)


@lru_cache(maxsize=32)
def get_adapter(name: str) -> PspAdapter:
    try:
        conf: dict[str, Any] = settings.PSP_CONNECTORS[name]
    except KeyError:
        raise PspConfigurationError(f"unknown connector {name!r}", connector=name) from None
    cls = import_string(conf["ADAPTER"])
    options = dict(conf.get("OPTIONS") or {})
    try:
        credentials = secret_get(f"psp/{name}")
    except SecretNotFoundError:
        raise PspConfigurationError(f"no credentials at psp/{name} in the secrets backend", connector=name) from None
    transport = None
    if options.get("in_process"):  # benchmarks and fast tests: the sandbox inside this process
        from psp_adapters.sandbox.inprocess import in_process_sandbox

        sandbox = in_process_sandbox(
            name,
            settings.SANDBOX_DATA_DIR,
            api_key=str(credentials.get("api_key") or ""),
            webhook_secret=str(credentials.get("webhook_secret") or ""),
            webhook_url=str(options.get("webhook_url") or ""),
            **dict(options.get("sandbox_options") or {}),  # e.g. dispute_delay
        )
        transport = sandbox.transport
        options["base_url"] = options.get("base_url") or sandbox.url
    http = build_http_client(options, transport=transport)
    adapter: PspAdapter = cls(name=name, options=options, credentials=credentials, http=http)
    return adapter


def adapters_reset() -> None:
    """Drop the cached adapters, e.g. after rotating credentials; the next call rebuilds them.
    Their pools are closed when garbage-collected (an in-flight call keeps its own client)."""
    get_adapter.cache_clear()


def _clear(*, setting: str, **kwargs: Any) -> None:
    if setting in {"PSP_CONNECTORS", "SECRETS_BACKEND"}:
        adapters_reset()


setting_changed.connect(_clear)
