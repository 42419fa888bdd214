"""The same contract against the in-process sandboxes (`OPTIONS["in_process"]`): no socket to
the PSP, the same app, storage and card behaviour. Webhooks still go to the local receiver."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from psp_adapters.sandbox.inprocess import InProcessSandbox, in_process_sandbox, in_process_sandboxes_close
from tests.psp_adapters.contract import PspAdapterContract
from tests.psp_adapters.sandbox_fixtures import ADAPTER_READ_TIMEOUT, sandbox_auth

TIMINGS = {
    "dispute_delay": 0.5,
    "refund_failure_delay": 0.2,
    "sepa_delay": 0.2,
    "return_delay": 0.5,
    "webhook_backoff": 0.2,
}


class InProcessHandle:
    """What the contract asks of a sandbox, for an in-process one."""

    def __init__(self, sandbox: InProcessSandbox):
        self.sandbox = sandbox
        self.url = sandbox.url

    def submit_challenge(self, url: str, result: str) -> httpx.Response:
        with self.sandbox.client() as shopper:
            page = shopper.get(url)
            page.raise_for_status()
            assert 'name="result"' in page.text
            return shopper.post(url, data={"result": result}, follow_redirects=False)

    def payments(self, reference: str | None = None) -> list[dict[str, Any]]:
        return self.sandbox.core.payments_debug(reference)

    def events(self) -> list[dict[str, Any]]:
        return self.sandbox.core.events()

    def close_dispute(self, dispute_id: str, status: str) -> httpx.Response:
        auth = sandbox_auth(self.sandbox.core.psp, self.sandbox.core.opts.api_key)
        with self.sandbox.client() as ops:
            return ops.post(f"{self.url}/_sandbox/disputes/{dispute_id}/close", json={"status": status}, headers=auth)

    def set_evidence_due(self, dispute_id: str, due: float | None) -> httpx.Response:
        auth = sandbox_auth(self.sandbox.core.psp, self.sandbox.core.opts.api_key)
        with self.sandbox.client() as ops:
            return ops.put(f"{self.url}/_sandbox/disputes/{dispute_id}", json={"evidence_due_by": due}, headers=auth)

    def dispute(self, dispute_id: str) -> dict[str, Any]:
        return {**self.sandbox.core.dispute(dispute_id), "evidence": self.sandbox.core.dispute_evidence(dispute_id)}


@pytest.fixture(scope="module")
def inprocess_env(tmp_path_factory, psp_webhooks):
    data_dir = tmp_path_factory.mktemp("inprocess")
    creds = {
        psp: {"api_key": f"{psp}_ip_{os.urandom(4).hex()}", "webhook_secret": os.urandom(8).hex()}
        for psp in ("alpha", "beta")
    }
    yield data_dir, creds, psp_webhooks.url
    in_process_sandboxes_close(data_dir)


class InProcessEnvironment:
    @pytest.fixture
    def psp_settings(self, inprocess_env, settings):
        from payera.secrets.services import secret_put
        from psp_adapters.registry import adapters_reset

        data_dir, creds, hooks = inprocess_env
        settings.SANDBOX_DATA_DIR = str(data_dir)
        settings.PSP_CONNECTORS = {
            psp: {
                "ADAPTER": f"psp_adapters.{psp}.{psp.capitalize()}Adapter",
                "OPTIONS": {
                    "in_process": True,
                    "read_timeout": ADAPTER_READ_TIMEOUT,
                    "webhook_url": f"{hooks}/{psp}",
                    "sandbox_options": TIMINGS,
                },
            }
            for psp in ("alpha", "beta")
        }
        for psp, c in creds.items():
            secret_put(f"psp/{psp}", c)
        adapters_reset()
        yield
        adapters_reset()

    @pytest.fixture
    def sandboxes(self, inprocess_env, psp_settings):
        data_dir, creds, hooks = inprocess_env
        return {
            psp: InProcessHandle(
                in_process_sandbox(psp, data_dir, webhook_url=f"{hooks}/{psp}", **creds[psp], **TIMINGS)
            )
            for psp in ("alpha", "beta")
        }


class TestAlphaInProcess(InProcessEnvironment, PspAdapterContract):
    connector = "alpha"

    def test_timeout_is_emulated_and_the_authorization_recorded(self, adapter):
        from psp_adapters.errors import PspTimeoutError
        from psp_adapters.port import Outcome, PspReference
        from tests.psp_adapters.contract import ref

        reference = ref()
        with pytest.raises(PspTimeoutError):
            self.authorize(adapter, "4000000000007726", reference=reference)
        assert adapter.inquire(PspReference(reference)).outcome == Outcome.APPROVED


class TestBetaInProcess(InProcessEnvironment, PspAdapterContract):
    connector = "beta"

    def test_signed_events_verify(self, adapter, sandboxes):
        r = self.settled(adapter, self.authorize(adapter))
        signed = sandboxes["beta"].sandbox.signed_events()
        events = [adapter.parse_webhook(body=b, headers=h) for h, b in signed]
        assert any(e.payment == r.payment for e in events)
