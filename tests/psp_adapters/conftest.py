import pytest

# The sandbox fixtures (sandboxes, psp_webhooks, psp_settings) come from the plugin that the
# root conftest loads: tests/psp_adapters/sandbox_fixtures.py.


@pytest.fixture(autouse=True)
def _memory_secrets(settings):
    """Credentials live in the in-process secrets backend for these tests."""
    settings.SECRETS_BACKEND = "memory"
