"""Sandbox PSPs `alpha` and `beta`: real HTTP servers that stand for payment providers outside
Payera (docs/sandbox.md). Standard library (plus `iso4217`), no Payera imports; state in `<data dir>/<psp>.sqlite3`.

Start one: `python -m psp_adapters.sandbox alpha --port 8101 --data-dir var/sandbox`.
`sandbox_command()` builds that command line for launchers (`make run`, test fixtures).
"""

from __future__ import annotations

import sys
from pathlib import Path

PSPS = ("alpha", "beta")


def sandbox_command(
    psp: str,
    *,
    port: int,
    data_dir: str | Path,
    host: str = "127.0.0.1",
    webhook_url: str = "",
    public_url: str = "",
    hold_seconds: float | None = None,
    dispute_delay: float | None = None,
    return_delay: float | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The argv that starts a sandbox. The API key and webhook secret are NOT on the command
    line (it is visible to every user of the machine): pass them in the environment as
    `SANDBOX_<PSP>_API_KEY` and `SANDBOX_<PSP>_WEBHOOK_SECRET`."""
    if psp not in PSPS:
        raise ValueError(f"unknown sandbox {psp!r}")
    cmd = [python, "-m", "psp_adapters.sandbox", psp, "--host", host, "--port", str(port), "--data-dir", str(data_dir)]
    if webhook_url:
        cmd += ["--webhook-url", webhook_url]
    if public_url:
        cmd += ["--public-url", public_url]
    if hold_seconds is not None:
        cmd += ["--hold-seconds", str(hold_seconds)]
    if dispute_delay is not None:
        cmd += ["--dispute-delay", str(dispute_delay)]
    if return_delay is not None:
        cmd += ["--return-delay", str(return_delay)]
    return cmd
