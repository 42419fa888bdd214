"""Starting the sandboxes from Payera (`manage.py run_sandboxes`, `make run`): ports from
`SANDBOX_<PSP>_URL`, state in `SANDBOX_DATA_DIR`, credentials shared with the adapters through
the secrets backend (`psp/<psp>`; generated and stored on first use), webhooks to Payera's
`/webhooks/psp/<psp>/`. The sandbox processes themselves never import Django."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from psp_adapters.sandbox import PSPS, sandbox_command


def sandbox_credentials_ensure(psp: str) -> dict[str, Any]:
    """The credentials at `psp/<psp>`; random ones are created when there are none yet."""
    from payera.secrets.backends.base import SecretNotFoundError
    from payera.secrets.services import secret_get, secret_put

    try:
        creds = secret_get(f"psp/{psp}")
        if creds.get("api_key") and creds.get("webhook_secret"):
            return creds
    except SecretNotFoundError:
        pass
    creds = {"api_key": f"{psp}_sk_{secrets.token_hex(16)}", "webhook_secret": f"{psp}_whsec_{secrets.token_hex(24)}"}
    secret_put(f"psp/{psp}", creds)
    return creds


def sandbox_processes(
    *, webhook_base_url: str, psps: tuple[str, ...] = PSPS, extra_args: list[str] | None = None
) -> list[subprocess.Popen[bytes]]:
    """Start the sandboxes configured in settings; the caller waits on / terminates them."""
    from django.conf import settings

    data_dir = Path(settings.SANDBOX_DATA_DIR)
    data_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for psp in psps:
        url = urlsplit(getattr(settings, f"SANDBOX_{psp.upper()}_URL"))
        creds = sandbox_credentials_ensure(psp)
        secret = creds["webhook_secret"]
        env = dict(os.environ)
        env[f"SANDBOX_{psp.upper()}_API_KEY"] = str(creds["api_key"])
        env[f"SANDBOX_{psp.upper()}_WEBHOOK_SECRET"] = str(secret[-1] if isinstance(secret, list) else secret)
        cmd = sandbox_command(
            psp,
            host=url.hostname or "127.0.0.1",
            port=url.port or 80,
            data_dir=data_dir,
            webhook_url=f"{webhook_base_url.rstrip('/')}/webhooks/psp/{psp}/",
        )
        procs.append(subprocess.Popen(cmd + list(extra_args or []), env=env))
    return procs
