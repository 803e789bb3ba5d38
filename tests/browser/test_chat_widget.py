"""Notebook 06's chat widget (helpers/chat_widget.py) as a person sees it, in headless Chromium:
a real conversation with the embedded model and a tiny real adapter (one reply from the base
model, one from the tuned), its widget state embedded in a page with ipywidgets' own HTML
manager (npm: @jupyter-widgets/html-manager, served from 127.0.0.1), then checked: each reply
labelled with its model, the slider row without a horizontal scrollbar and "Temperature" whole
at a notebook's width, and the widget's key script turning Enter into Send while Shift+Enter
stays a new line. A screenshot is kept."""
import functools
import http.server
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from tiny_adapter import EMBEDDED, REPO, tiny_adapter

pytestmark = pytest.mark.browser  # skipped without Debian's chromium + chromedriver (tests/conftest.py)
HTML_MANAGER = "@jupyter-widgets/html-manager@1.0.15"  # the version ipywidgets 8.1 embeds


@pytest.fixture(scope="session")
def html_manager() -> Path:
    """embed.js of ipywidgets' HTML manager, from npm once (cached in .cache/, git-ignored)."""
    cache = REPO / ".cache" / "npm-html-manager"
    js = cache / "node_modules" / "@jupyter-widgets" / "html-manager" / "dist" / "embed.js"
    if not js.exists():
        if not shutil.which("npm"):
            pytest.skip("needs npm to fetch @jupyter-widgets/html-manager")
        cache.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(cache), HTML_MANAGER],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0 or not js.exists():
            pytest.skip(f"npm could not fetch {HTML_MANAGER}: {r.stderr[-500:]}")
    return js.parent


@pytest.fixture(scope="module")
def widget_page(tmp_path_factory, html_manager):
    from ipywidgets.embed import embed_minimal_html
    from helpers.chat.session import ChatSession, load_chat_model
    from helpers.chat.widget import ENTER_SENDS_JS, ChatWidget
    adapter = tiny_adapter(tmp_path_factory.getbasetemp())
    model, tok = load_chat_model(EMBEDDED, str(adapter), quantization="none")
    ui = ChatWidget(ChatSession(model, tok, temperature=0.0, max_new_tokens=12))
    ui.model_switch.value = "base"
    ui.send("Hi! What do you like to do on weekends?", wait=True)
    ui.model_switch.value = "tuned"
    ui.send("Why that?", wait=True)
    assert not ui.error, ui.error
    site = tmp_path_factory.mktemp("widget-page")
    shutil.copytree(html_manager, site / "dist")
    page = site / "chat.html"
    # Jupyter's notebook output area is about 900 px wide at a usual window size
    template = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
                "<body style='margin:0;padding:16px;font-family:sans-serif'>"
                "<div id='output' style='width:880px;border:1px dashed #bbb;padding:4px'>{snippet}</div>"
                "<script>" + ENTER_SENDS_JS.replace("{", "{{").replace("}", "}}") + "</script></body></html>")
    embed_minimal_html(str(page), views=[ui.box], title="chat widget", template=template, requirejs=False,
                       embed_url="dist/embed.js")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/chat.html", ui
    finally:
        server.shutdown()


def test_widget_labels_replies_fits_and_enter_sends(widget_page, browser, screenshots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    url, ui = widget_page
    browser.get(url)
    root = WebDriverWait(browser, 60).until(lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, ".kit-chat")), None))
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".kit-chat .widget-slider")) == 3)
    shot = screenshots / "chat_widget.png"
    root.screenshot(str(shot))
    print(f"screenshot of the chat widget: {shot}")
    # each reply says which model wrote it, in the order they were written
    labels = [e.text for e in root.find_elements(By.CSS_SELECTOR, ".kit-chat-who")]
    assert labels == ["base model", "tuned model"], labels
    # the slider row fits the output area: no horizontal scrollbar, each slider's label whole
    row = root.find_elements(By.CSS_SELECTOR, ".widget-slider")[0].find_element(By.XPATH, "..")
    assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth + 1;", row)
    wider = browser.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return [...arguments[0].querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > r.right + 1)"
        ".map(e => e.className + ' ' + Math.round(e.getBoundingClientRect().right - r.right) + 'px');", root)
    assert not wider, f"wider than the widget: {wider} (screenshot: {shot})"
    for e in root.find_elements(By.CSS_SELECTOR, ".widget-slider .widget-label"):
        if e.text:
            assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth + 1;", e), \
                f"slider label {e.text!r} is cut off (screenshot: {shot})"
    assert "Temperature" in [e.text for e in root.find_elements(By.CSS_SELECTOR, ".widget-slider .widget-label")]
    # Enter clicks Send (counted here, as the static page has no kernel); Shift+Enter adds a line
    send = root.find_element(By.CSS_SELECTOR, "button.kit-chat-send")
    browser.execute_script("window.sends = 0; arguments[0].addEventListener('click', () => window.sends++);", send)
    box = root.find_element(By.CSS_SELECTOR, ".kit-chat-message textarea")
    box.send_keys("first line")
    box.send_keys(Keys.SHIFT, Keys.ENTER)
    box.send_keys("second line")
    assert browser.execute_script("return window.sends;") == 0
    assert box.get_attribute("value") == "first line\nsecond line"
    box.send_keys(Keys.ENTER)
    assert browser.execute_script("return window.sends;") == 1
    assert box.get_attribute("value") == "first line\nsecond line"  # Enter added no line of its own
    assert "BASE MODEL:" in ui.text() and "TUNED MODEL:" in ui.text()
