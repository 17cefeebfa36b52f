"""The explorer page in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`) driven by Selenium against the app served on loopback.

On the professions world's FairFace it compares the shipped original CLIP with a biased-prompts
checkpoint fitted on it here; it types a prompt, waits for both grids and share bars, checks a bad
input becomes a message in the page, and saves a screenshot (to the path in
`CF_HF_EXPLORER_SCREENSHOT` when set: README's docs/explorer.png is made this way).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

K = 12
PER_CELL = 8  # 128 people
PROMPT = "a photo of a firefighter"
BROWSER_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER_PATHS = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
WAIT_SECONDS = 60


def _first(paths):
    return next((path for path in paths if Path(path).is_file()), None)


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("gradio", reason="the explorer page needs gradio: pip install 'cf_hf[test]'")
    pytest.importorskip("selenium", reason="the browser test drives Chromium with selenium: pip install 'cf_hf[test]'")
    binary, driver_path = _first(BROWSER_PATHS), _first(DRIVER_PATHS)
    if binary is None or driver_path is None:
        pytest.skip("no headless browser here: install Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver; .ci/run does)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1250"):
        options.add_argument(argument)
    options.binary_location = binary
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_path))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The explorer of the shipped original vs biased prompts fitted on it, served on loopback."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from cf_hf.evaluation.embedding import EmbeddingConfig
    from cf_hf.explorer import build_app, build_explorer, gallery_image, load_world_gallery
    from cf_hf.methods import get_method
    from cf_hf.world import render
    from cf_hf.world.corpus import ATTRIBUTES
    from cf_hf.world.demo.stages import WORLD_DIR
    from cf_hf.world.original import ORIGINAL_DIR

    work = tmp_path_factory.mktemp("explorer_browser")
    config = EmbeddingConfig(cache_dir=str(work / "cache"), progress=False)
    (fitted,) = get_method("biased_prompts").fit(ORIGINAL_DIR, work / "methods", list(ATTRIBUTES), list(render.PROFESSIONS),
                                          [1000.0], WORLD_DIR / "biased_prompts.yaml", embedding_config=config)
    gallery = load_world_gallery("test", per_cell=PER_CELL)
    explorer, _ = build_explorer({"original": ORIGINAL_DIR, "biased prompts (λ = 1000)": fitted.path}, gallery, config)
    app = build_app(explorer, lambda index: gallery_image(gallery, index), default_prompt=PROMPT, default_k=K)
    _, url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    yield url, work
    app.close()


def _type(element, text: str) -> None:
    """Replace the field's text as a user does (Selenium's `clear()` sends no input event to gradio)."""
    from selenium.webdriver.common.keys import Keys

    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    if text:
        element.send_keys(text)


def _search(browser, prompt: str, k: int | None = None):
    from selenium.webdriver.common.by import By

    _type(browser.find_element(By.CSS_SELECTOR, "#prompt textarea"), prompt)
    if k is not None:
        _type(browser.find_element(By.CSS_SELECTOR, "#k input"), str(k))
    browser.find_element(By.CSS_SELECTOR, "#search").click()


def _wait(browser, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_SECONDS).until(condition)


def test_both_models_grids_share_bars_and_metrics_render(browser, page):
    from selenium.webdriver.common.by import By

    url, work = page
    browser.get(url)
    _wait(browser, lambda driver: driver.find_elements(By.CSS_SELECTOR, "#prompt textarea"))
    _search(browser, PROMPT, K)
    for index in (0, 1):
        _wait(browser, lambda driver, index=index: len(driver.find_elements(By.CSS_SELECTOR, f"#gallery-{index} img")) >= K)
        bars = browser.find_elements(By.CSS_SELECTOR, f"#shares-{index} .share-row")
        assert [bar.get_attribute("data-value") for bar in bars] == ["female", "male"]
        assert f"MaxSkew@{K}" in browser.find_element(By.CSS_SELECTOR, f"#metrics-{index}").text
    assert browser.find_element(By.CSS_SELECTOR, "#metrics-1").text.startswith("biased prompts (λ = 1000)")
    assert f"Top-{K} of 128 images of world_fairface" in browser.find_element(By.CSS_SELECTOR, "#message").text
    browser.execute_script("window.scrollTo(0, 0)")
    screenshot = work / "explorer.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    if os.environ.get("CF_HF_EXPLORER_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["CF_HF_EXPLORER_SCREENSHOT"])


@pytest.mark.parametrize(("prompt", "k", "message"), [
    ("", None, "Cannot search: the prompt is empty"),
    ("a photo of a chef", 500, "k = 500 is not below the size of the gallery 'world_fairface' (128 images)"),
    ("a photo of a chef", 128, "k = 128 is not below the size of the gallery 'world_fairface' (128 images)"),
])  # fmt: skip
def test_a_bad_input_is_a_message_in_the_page(browser, page, prompt, k, message):
    from selenium.webdriver.common.by import By

    url, _ = page
    if not browser.current_url.startswith(url):
        browser.get(url)
        _wait(browser, lambda driver: driver.find_elements(By.CSS_SELECTOR, "#prompt textarea"))
    _search(browser, prompt, k)
    _wait(browser, lambda driver: message in driver.find_element(By.CSS_SELECTOR, "#message").text)
    assert browser.find_elements(By.CSS_SELECTOR, "#gallery-0 img") == []
    assert "Traceback" not in browser.page_source
