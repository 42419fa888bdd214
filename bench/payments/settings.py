"""Benchmark settings: Payera's base settings, alpha on loopback, a bare endpoint beside the API."""

import os

from payera.settings.base import *  # noqa: F403

ROOT_URLCONF = "bench.payments.urls"
PSP_CONNECTORS = {
    "alpha": {
        "ADAPTER": "psp_adapters.alpha.AlphaAdapter",
        "OPTIONS": {"base_url": os.environ.get("BENCH_ALPHA_URL", ""), "read_timeout": 10, "connect_timeout": 2},
    },
}
