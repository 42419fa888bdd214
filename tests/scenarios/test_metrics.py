"""Authorization outcomes reach the Prometheus counters (payera.core.metrics), once each."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

pytestmark = [pytest.mark.scenario]


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_approved_declined_and_unknown_outcomes_are_counted(env):
    from payments.services import recovery_run

    approved = sample("payera_authorizations_total", connector="alpha", result="approved", decline_code="")
    declined = sample(
        "payera_authorizations_total", connector="alpha", result="declined", decline_code="insufficient_funds"
    )
    unknown = sample("payera_unknown_outcomes_total", connector="alpha")
    resolved = sample("payera_unknown_outcomes_resolved_total", connector="alpha", result="approved")
    timeouts = sample("payera_psp_errors_total", connector="alpha", kind="psp_timeout")

    env.pay("4242424242424242")
    env.pay("4000000000009995")
    p = env.pay("4000000000007726")
    assert p["status"] == "processing"
    recovery_run(force=True)
    recovery_run(force=True)  # a second pass changes nothing and counts nothing

    assert sample("payera_authorizations_total", connector="alpha", result="approved", decline_code="") == approved + 2
    assert (
        sample("payera_authorizations_total", connector="alpha", result="declined", decline_code="insufficient_funds")
        == declined + 1
    )
    assert sample("payera_unknown_outcomes_total", connector="alpha") == unknown + 1
    assert sample("payera_psp_errors_total", connector="alpha", kind="psp_timeout") == timeouts + 1
    assert sample("payera_unknown_outcomes_resolved_total", connector="alpha", result="approved") == resolved + 1
