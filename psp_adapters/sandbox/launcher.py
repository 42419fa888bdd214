"""Starting the sandboxes from Payera (`make run` via `run_all`, `manage.py run_sandboxes`).

Ports come from `SANDBOX_<PSP>_URL`, state lives in `SANDBOX_DATA_DIR`, webhooks go to Payera's
`/webhooks/psp/<psp>/`. Credentials have one source, the secrets backend at `psp/<psp>`
(`{"api_key", "webhook_secret"}`, random ones are created on first use), which the adapters read
too; the sandbox gets them through a 0600 file in its data dir (`--credentials-file`), never on
its command line. The sandbox processes themselves never import Django or Payera.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from psp_adapters.sandbox import PSPS, sandbox_command

log = logging.getLogger("psp_adapters.sandbox")


def sandbox_credentials_ensure(psp: str) -> dict[str, Any]:
    """The credentials at `psp/<psp>` in the secrets backend; random ones are stored when
    there are none yet."""
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


def write_credentials_file(data_dir: Path, psp: str, creds: dict[str, Any]) -> Path:
    secret = creds["webhook_secret"]
    payload = {
        "api_key": str(creds["api_key"]),
        # during a roll the adapters accept every secret; the PSP signs with the newest
        "webhook_secret": str(secret[-1] if isinstance(secret, list | tuple) else secret),
    }
    path = data_dir / f"{psp}.credentials.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh)
    os.chmod(path, 0o600)
    return path


def sandbox_commands(
    *,
    python: str = sys.executable,
    webhook_base_url: str | None = None,
    psps: tuple[str, ...] = PSPS,
) -> dict[str, list[str]]:
    """`{"alpha": argv, "beta": argv}` for the sandboxes configured in settings."""
    from django.conf import settings

    data_dir = Path(settings.SANDBOX_DATA_DIR)
    data_dir.mkdir(parents=True, exist_ok=True)
    base = webhook_base_url or f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
    commands = {}
    for psp in psps:
        url = urlsplit(getattr(settings, f"SANDBOX_{psp.upper()}_URL"))
        cmd = sandbox_command(
            psp,
            host=url.hostname or "127.0.0.1",
            port=url.port or 80,
            data_dir=data_dir,
            webhook_url=f"{base.rstrip('/')}/webhooks/psp/{psp}/",
            python=python,
        )
        try:
            creds = sandbox_credentials_ensure(psp)
        except Exception as exc:  # no usable secrets backend: the sandbox runs with dev credentials
            log.warning("sandbox %s: secrets backend unusable (%s); using its development credentials", psp, exc)
        else:
            cmd += ["--credentials-file", str(write_credentials_file(data_dir, psp, creds))]
        commands[psp] = cmd
    return commands
