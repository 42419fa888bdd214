"""`get_adapter(name)`: the configured adapter of a connector, built once per process.

`settings.PSP_CONNECTORS[name]` gives the class (`ADAPTER`, a dotted path) and `OPTIONS`
(base_url, timeouts, pool sizes); credentials come from the secrets backend at `psp/<name>`
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
    adapter: PspAdapter = cls(name=name, options=options, credentials=credentials, http=build_http_client(options))
    return adapter


def adapters_reset() -> None:
    """Drop the cached adapters, e.g. after rotating credentials; the next call rebuilds them.
    Their pools are closed when garbage-collected (an in-flight call keeps its own client)."""
    get_adapter.cache_clear()


def _clear(*, setting: str, **kwargs: Any) -> None:
    if setting in {"PSP_CONNECTORS", "SECRETS_BACKEND"}:
        adapters_reset()


setting_changed.connect(_clear)
