import pytest

# The sandbox fixtures are a plugin other test packages can load too; pytest only honours
# `pytest_plugins` in the root conftest, so this package imports them.
from tests.psp_adapters.sandbox_fixtures import psp_settings, psp_webhooks, sandboxes  # noqa: F401


@pytest.fixture(autouse=True)
def _memory_secrets(settings):
    """Credentials live in the in-process secrets backend for these tests."""
    settings.SECRETS_BACKEND = "memory"
