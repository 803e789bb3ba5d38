"""Browser tests: the Gradio app and notebook 06's chat widget in Debian's headless Chromium.

Every test module here is marked ``browser`` (``pytestmark``); ``tests/conftest.py`` skips them when
chromium and chromium-driver are not installed (``apt-get install -y chromium chromium-driver``), so
``pytest -m "not browser"`` leaves them out and ``pytest -m browser`` runs only them.

Screenshots are test artefacts: they go to ``$LLAMA_KIT_SCREENSHOTS`` if set, else to
``runs/screenshots/`` in the repository (git-ignored), and each test prints where it wrote them.
"""
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"  # as tests/conftest.py checks

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(os.environ.get("LLAMA_KIT_SCREENSHOTS") or REPO / "runs" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1200,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
