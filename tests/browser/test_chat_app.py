"""The Gradio chat app (app/app.py) in a real headless Chromium, against the app on 127.0.0.1 with
the embedded model and a tiny real adapter: the layout a person sees (the conversation first, the
preset and model choice visible, the sampling settings in one panel; a screenshot is kept), then
type a message, watch the answer stream in, press Stop."""
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from selenium.common.exceptions import StaleElementReferenceException

from tiny_adapter import EMBEDDED, REPO, tiny_adapter

# Gradio re-renders elements as a reply streams: a wait that meets a stale element polls again.
STALE = (StaleElementReferenceException,)

pytestmark = pytest.mark.browser  # skipped without Debian's chromium + chromedriver (tests/conftest.py)


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


def bot_text(driver) -> str:
    from selenium.webdriver.common.by import By
    rows = driver.find_elements(By.CSS_SELECTOR, ".bot-row")
    return rows[-1].text.strip() if rows else ""


def message_box(driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, 120, ignored_exceptions=STALE).until(
        lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, "#message textarea") if e.is_displayed()
                        and e.is_enabled()), None))


RECT = "const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom];"
BEFORE = "return !!(arguments[0].compareDocumentPosition(arguments[1]) & Node.DOCUMENT_POSITION_FOLLOWING);"


def test_layout_conversation_first_settings_beside_it(app_url, browser, screenshots):
    from selenium.webdriver.common.by import By
    url, log = app_url
    browser.get(url)
    box = message_box(browser)
    el = {name: browser.find_element(By.ID, name) for name in
          ("header", "conversation", "side-panel", "chatbot", "preset", "model-choice", "sampling", "temperature",
           "top-p", "max-new-tokens", "system")}
    rect = {name: browser.execute_script(RECT, e) for name, e in el.items()}
    rect["message"] = browser.execute_script(RECT, box)
    view_w, view_h = browser.execute_script("return [window.innerWidth, window.innerHeight];")
    shot = screenshots / "gradio_app.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot of the app: {shot}")
    # the header names the base model and the training run the adapter came from (not the bare folder name)
    header = el["header"].text
    assert EMBEDDED in header and "run tiny-sft" in header, header
    # everything a person needs is visible on the first screen, no scrolling
    for name in ("chatbot", "message", "preset", "model-choice", "temperature", "top-p", "max-new-tokens"):
        left, top, right, bottom = rect[name]
        assert (el[name] if name in el else box).is_displayed(), f"{name} is not visible"
        assert 0 <= left and right <= view_w and 0 <= top and bottom <= view_h, \
            f"{name} at {rect[name]} is outside the {view_w}x{view_h} window (screenshot: {shot})"
    # the conversation comes first: before the side panel in reading order, to its left, at the same height
    assert browser.execute_script(BEFORE, el["conversation"], el["side-panel"]), "the side panel precedes the chat"
    assert rect["chatbot"][2] <= rect["preset"][0] and abs(rect["chatbot"][1] - rect["side-panel"][1]) < 60, rect
    # the message box right under the conversation; preset, then model, then sampling, then the system prompt
    assert rect["chatbot"][3] <= rect["message"][1] < rect["chatbot"][3] + 80, rect
    tops = [rect[n][1] for n in ("preset", "model-choice", "sampling", "system")]
    assert tops == sorted(tops), dict(zip(("preset", "model-choice", "sampling", "system"), tops))
    # the three sampling sliders all sit in the one Sampling panel, and no other slider exists
    sliders = browser.find_elements(By.CSS_SELECTOR, 'input[type="range"]')
    assert len(sliders) == 3, len(sliders)
    inside = el["sampling"].find_elements(By.CSS_SELECTOR, 'input[type="range"]')
    assert len(inside) == 3 and el["sampling"].is_displayed()
    assert "Sampling" in el["sampling"].text
    # one collapsible panel on the page, Sampling: no empty or leftover "Settings"/"Additional Inputs" one
    panels = [e.text.split("\n")[0] for e in browser.find_elements(By.CSS_SELECTOR, ".gr-accordion .label-wrap")]
    assert panels == ["Sampling"], panels
    # the labels are whole: "Temperature" is not cut off
    label = next(e for e in el["temperature"].find_elements(By.XPATH, ".//*[text()='Temperature']"))
    assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth + 1;", label)
    # both models are offered, tuned by default
    radios = el["model-choice"].find_elements(By.CSS_SELECTOR, 'input[type="radio"]')
    assert [r.get_attribute("value") for r in radios] == ["tuned", "base"] and radios[0].is_selected()
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def test_message_streams_an_answer_and_stop_works(app_url, browser, screenshots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    url, log = app_url
    browser.get(url)
    box = message_box(browser)
    box.send_keys("Hello! Tell me about your favourite book.")
    box.send_keys(Keys.ENTER)  # Enter sends
    WebDriverWait(browser, 180, poll_frequency=0.1, ignored_exceptions=STALE).until(lambda d: bot_text(d))
    first = bot_text(browser)
    stops = [b for b in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stop-button"], button.stop-button')
             if b.is_displayed()]
    if stops:  # still streaming: Stop must end it and keep what was written
        stops[0].click()
    WebDriverWait(browser, 120, ignored_exceptions=STALE).until(
        lambda d: not any(b.is_displayed() for b in d.find_elements(By.CSS_SELECTOR, '[data-testid="stop-button"]')))
    final = bot_text(browser)
    assert first and final.startswith(first[: max(1, len(first) - 2)]), (first, final)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    # Shift+Enter adds a line without sending; Enter then sends both lines as one message
    box.send_keys("Thanks!")
    box.send_keys(Keys.SHIFT, Keys.ENTER)
    box.send_keys("Bye.")
    time.sleep(0.5)
    assert len(browser.find_elements(By.CSS_SELECTOR, ".user-row")) == 1
    assert box.get_attribute("value") == "Thanks!\nBye."
    box.send_keys(Keys.ENTER)
    WebDriverWait(browser, 180, poll_frequency=0.2, ignored_exceptions=STALE).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".bot-row")) >= 2 and bot_text(d)
    )
    users = browser.find_elements(By.CSS_SELECTOR, ".user-row")
    assert len(users) == 2 and "Bye." in users[-1].text, [u.text for u in users]
    WebDriverWait(browser, 120, ignored_exceptions=STALE).until(
        lambda d: not any(b.is_displayed() for b in d.find_elements(By.CSS_SELECTOR, '[data-testid="stop-button"]')))
    shot = screenshots / "gradio_app_conversation.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot of the app after two turns: {shot}")


def set_number(driver, elem_id: str, value: int) -> None:
    """Type a value into a slider's number box (as a person would) and leave the box."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    box = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type='number']")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value), Keys.TAB)
    time.sleep(0.5)


def wait_idle(driver, timeout=180):
    """Until the reply is done: the Stop button is gone and no reply holds the streaming cursor."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=STALE).until(
        lambda d: not any(b.is_displayed() for b in d.find_elements(By.CSS_SELECTOR, '[data-testid="stop-button"]'))
        and "▌" not in bot_text(d))


def test_replies_say_which_model_wrote_them_and_how_they_ended(app_url, browser, screenshots):
    """Each reply starts with its model's label (kept after switching), a reply cut at the token limit
    ends with "… [cut at N tokens]", a stopped one with "[stopped]"."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    url, log = app_url
    browser.get(url)
    box = message_box(browser)
    set_number(browser, "temperature", 0)
    set_number(browser, "max-new-tokens", 6)
    box.send_keys("Tell me about the sea.", Keys.ENTER)
    WebDriverWait(browser, 180, ignored_exceptions=STALE).until(lambda d: bot_text(d))
    wait_idle(browser)
    first = bot_text(browser)
    assert first.startswith("tuned model:") and first.endswith("… [cut at 6 tokens]"), first
    # switch to the base: the new reply says so, the first keeps its label
    browser.find_element(By.CSS_SELECTOR, '#model-choice input[value="base"]').click()
    box = message_box(browser)
    box.send_keys("And the mountains?", Keys.ENTER)
    WebDriverWait(browser, 180, ignored_exceptions=STALE).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".bot-row")) >= 2)
    wait_idle(browser)
    bots = [b.text.strip() for b in browser.find_elements(By.CSS_SELECTOR, ".bot-row")]
    assert bots[0].startswith("tuned model:") and bots[1].startswith("base model:"), bots
    assert bots[1].endswith("[cut at 6 tokens]"), bots
    # a long reply stopped mid-way keeps its text and says it was stopped
    set_number(browser, "max-new-tokens", 1000)
    box = message_box(browser)
    box.send_keys("Write a very long story about a lighthouse keeper and the sea.", Keys.ENTER)
    WebDriverWait(browser, 180, poll_frequency=0.1, ignored_exceptions=STALE).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".bot-row")) >= 3 and "▌" in bot_text(d)
        and len(bot_text(d)) > len("base model: ") + 2)
    stop = next(b for b in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stop-button"]') if b.is_displayed())
    stop.click()
    wait_idle(browser, 120)
    stopped = bot_text(browser)
    assert stopped.startswith("base model:") and stopped.endswith("[stopped]"), stopped
    shot = screenshots / "gradio_app_labels.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot of labelled, cut and stopped replies: {shot}")
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def test_narrow_window_panel_below_and_header_says_no_position(app_url, browser, screenshots):
    from selenium.webdriver.common.by import By
    url, log = app_url
    browser.set_window_size(560, 1000)
    browser.get(url)
    message_box(browser)
    chat = browser.execute_script(RECT, browser.find_element(By.ID, "chatbot"))
    panel = browser.execute_script(RECT, browser.find_element(By.ID, "side-panel"))
    header = browser.find_element(By.ID, "header").text
    shot = screenshots / "gradio_app_narrow.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot of the app in a narrow window: {shot}")
    assert panel[1] >= chat[3], (chat, panel)  # the side panel moved below the conversation
    assert not any(w in header.lower() for w in ("on the right", "on the left", "beside", "below")), header
    assert "each reply says which model wrote it" in header, header
