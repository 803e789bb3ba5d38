"""The Gradio chat app (app/app.py) in a real headless Chromium, against the app on 127.0.0.1 with
the embedded model and a tiny real adapter: type a message, watch the answer stream in, press Stop."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import selenium  # noqa: F401  (the dev extra installs it, with gradio)

from conftest import CHROMEDRIVER, CHROMIUM
from tiny_adapter import EMBEDDED, REPO, tiny_adapter

pytestmark = pytest.mark.browser  # skipped without Debian's chromium + chromedriver (conftest.py)


@pytest.fixture(scope="session")
def adapter(tmp_path_factory):
    return tiny_adapter(tmp_path_factory.getbasetemp())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(adapter, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = dict(os.environ, MODEL_NAME=EMBEDDED, ADAPTER=str(adapter), QUANTIZATION="none",
               GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, str(REPO / "app" / "app.py")], env=env, stdout=fh,
                                stderr=subprocess.STDOUT, cwd=str(REPO))
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"the app did not answer on {url} within 300 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


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


def bot_text(driver) -> str:
    from selenium.webdriver.common.by import By
    rows = driver.find_elements(By.CSS_SELECTOR, ".bot-row")
    return rows[-1].text.strip() if rows else ""


def test_message_streams_an_answer_and_stop_works(app_url, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    url, log = app_url
    browser.get(url)
    box = WebDriverWait(browser, 120).until(
        lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, "textarea") if e.is_displayed()
                        and e.is_enabled()), None))
    box.send_keys("Hello! Tell me about your favourite book.")
    box.send_keys(Keys.ENTER)
    WebDriverWait(browser, 180, poll_frequency=0.1).until(lambda d: bot_text(d))
    first = bot_text(browser)
    stops = [b for b in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stop-button"], button.stop-button')
             if b.is_displayed()]
    if stops:  # still streaming: Stop must end it and keep what was written
        stops[0].click()
    WebDriverWait(browser, 120).until(
        lambda d: not any(b.is_displayed() for b in d.find_elements(By.CSS_SELECTOR, '[data-testid="stop-button"]')))
    final = bot_text(browser)
    assert first and final.startswith(first[: max(1, len(first) - 2)]), (first, final)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    # the chat goes on after a stop: a second message gets its own answer
    box.send_keys("Thanks!")
    box.send_keys(Keys.ENTER)
    WebDriverWait(browser, 180, poll_frequency=0.2).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".bot-row")) >= 2
                                                         and bot_text(d))
