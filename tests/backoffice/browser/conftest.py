"""Headless Chromium (Debian's `chromium` + `chromium-driver`) through Selenium, against
pytest-django's live server. Skipped, with the reason, where the browser is not installed;
`.ci/run` installs it, so CI runs them; with PAYERA_REQUIRE_BROWSER=1 (CI sets it) a missing
browser is an error instead of a skip."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

CHROMIUM = os.environ.get("CHROMIUM_BINARY") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1400,1000",
)


def _is_browser_test(item) -> bool:
    return "tests/backoffice/browser/" in str(item.fspath).replace(os.sep, "/")


def pytest_collection_modifyitems(config, items):
    if CHROMIUM and CHROMEDRIVER:
        return
    if os.environ.get("PAYERA_REQUIRE_BROWSER") == "1" and any(_is_browser_test(item) for item in items):
        raise pytest.UsageError(
            "PAYERA_REQUIRE_BROWSER=1 but chromium or chromedriver is missing: "
            "apt-get install -y chromium chromium-driver"
        )
    skip = pytest.mark.skip(
        reason="headless browser tests need Debian's chromium and chromium-driver "
        "(apt-get install -y chromium chromium-driver; .ci/run installs them)"
    )
    for item in items:
        if _is_browser_test(item):
            item.add_marker(skip)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="payera-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
