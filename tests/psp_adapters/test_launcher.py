"""`make run`'s path: the launcher's sandboxes and the registry's adapters share credentials."""

from __future__ import annotations

import select
import stat
import subprocess

import pytest

from psp_adapters.port import AuthorizeRequest, Outcome
from tests.helpers import free_port
from tests.psp_adapters.contract import card, ref
from tests.psp_adapters.sandbox_fixtures import REPO_ROOT


@pytest.mark.parametrize("psp", ["alpha", "beta"])
def test_launched_sandbox_accepts_the_adapters_credentials(psp, settings, tmp_path):
    from psp_adapters.registry import adapters_reset, get_adapter
    from psp_adapters.sandbox.launcher import sandbox_commands

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings.SANDBOX_DATA_DIR = str(tmp_path)
    setattr(settings, f"SANDBOX_{psp.upper()}_URL", url)
    settings.PSP_CONNECTORS = {
        psp: {"ADAPTER": f"psp_adapters.{psp}.{psp.capitalize()}Adapter", "OPTIONS": {"base_url": url}}
    }
    cmd = sandbox_commands(psps=(psp,))[psp]
    assert "--credentials-file" in cmd and not any("_sk_" in part for part in cmd)
    creds_file = tmp_path / f"{psp}.credentials.json"
    assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert select.select([proc.stdout], [], [], 20)[0]
        assert "listening on" in proc.stdout.readline().decode()
        adapters_reset()
        result = get_adapter(psp).authorize(
            AuthorizeRequest(reference=ref(), amount=500, currency="EUR", payment_method=card())
        )
        assert result.outcome in (Outcome.APPROVED, Outcome.PENDING)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        adapters_reset()
