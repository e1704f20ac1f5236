"""The Gradio Space in a real headless browser: Playwright driving Debian's Chromium (never a browser download).

Install the browser with `apt-get install -y --no-install-recommends chromium` (CI's `.ci/run` does). The test
uploads an image, types class names, clicks Classify, reads both result labels, checks that a bad class list shows
its message in the page and that the app answers afterwards, and saves screenshots to `$METAPROMPT_SCREENSHOT_DIR`
(default: pytest's temporary directory); the paths are printed.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
APP_PATH = ROOT / "spaces" / "app.py"
EXAMPLE = ROOT / "spaces" / "examples" / "sketch_fish.png"
CLASSES = "house, tree, fish, flower, umbrella"
TIMEOUT_MS = 20_000
# Product of the opacities of an element and its ancestors (CSS opacity compounds down the tree).
OPACITY_JS = """function opacity(el) {
    let value = 1;
    for (let node = el; node instanceof Element; node = node.parentElement) {
        value *= parseFloat(getComputedStyle(node).opacity);
    }
    return value;
}"""
OPAQUE_JS = f"el => {{ {OPACITY_JS}; return opacity(el) > 0.99; }}"
# Both labels hold percentages, every element showing one is opaque, and gradio's "pending" overlay (an opaque
# layer covering the whole component that fades out when the result arrives) is gone.
RESULTS_SHOWN_JS = f"""() => {{
    {OPACITY_JS};
    return ['metaprompt-probs', 'zero-shot-probs'].every(id => {{
        const el = document.getElementById(id);
        if (!el || !/%/.test(el.innerText)) return false;
        const all = [...el.querySelectorAll('*')];
        const leaves = all.filter(n => !n.children.length && /%/.test(n.textContent));
        const box = el.getBoundingClientRect();
        const overlays = all.filter(n => {{
            const r = n.getBoundingClientRect(), style = getComputedStyle(n);
            return r.width * r.height > 0.9 * box.width * box.height && style.position === 'absolute'
                && style.backgroundColor !== 'rgba(0, 0, 0, 0)';
        }});
        return leaves.length > 0 && leaves.every(n => opacity(n) > 0.99) && overlays.every(n => opacity(n) < 0.01);
    }});
}}"""

pytestmark = [
    pytest.mark.browser,
    # gradio's queue calls pandas APIs that pandas 3 deprecates: not ours to fix.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing"),
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason=f"Debian's Chromium is not installed at {CHROMIUM} "
        "(apt-get install -y --no-install-recommends chromium; CI installs it)",
    ),
]


def load_app() -> ModuleType:
    """Import `spaces/app.py` (not a package) once per process."""
    name = "metaprompt_space_app"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, APP_PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    app = load_app()
    demo = app.build_demo(app.load_model("embedded"), model_name="embedded")
    try:
        _, url, _ = demo.launch(
            prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), **app.LAUNCH_KWARGS
        )
        yield url
    finally:
        demo.close()


@pytest.fixture
def screenshot_dir(tmp_path) -> Path:
    path = Path(os.environ.get("METAPROMPT_SCREENSHOT_DIR") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _label_text(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()


def test_upload_classify_and_read_result(app_url, screenshot_dir):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(app_url, wait_until="networkidle")

            page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLE))
            # The upload is done when the preview image appears.
            page.locator("#input-image img").first.wait_for(state="visible")

            # A single class: the app's message shows in the page, nothing is classified.
            page.locator("#class-names textarea").fill("fish")
            page.locator("#classify-button").click()
            message = page.get_by_text("Please enter at least two class names").first
            message.wait_for(state="visible")
            # The toast fades in: wait until it is fully opaque so the screenshot shows the message legibly.
            page.wait_for_function(OPAQUE_JS, arg=message.element_handle())
            error_shot = screenshot_dir / "space_error.png"
            page.screenshot(path=str(error_shot), full_page=True)
            page.locator(".toast-close").first.click()  # dismiss it, so the result screenshot shows the result
            message.wait_for(state="detached")

            # Then a proper list: the app still answers, with both labels filled.
            page.locator("#class-names textarea").fill(CLASSES)
            page.locator("#template input, #template textarea").first.fill("a sketch of a {}")
            page.locator("#classify-button").click()
            page.wait_for_function(RESULTS_SHOWN_JS)
            result_shot = screenshot_dir / "space_result.png"
            page.screenshot(path=str(result_shot), full_page=True)
            metaprompt, zero_shot = _label_text(page, "metaprompt-probs"), _label_text(page, "zero-shot-probs")

            # A shipped example fills image, classes and template; classifying it replaces the labels.
            page.get_by_role("button", name="handwritten digit").click()
            page.wait_for_function("() => document.querySelector('#class-names textarea').value.includes('seven')")
            page.locator("#classify-button").click()
            page.wait_for_function(
                "() => ['metaprompt-probs', 'zero-shot-probs'].every(id => "
                "!document.getElementById(id).innerText.includes('house'))"
            )
            page.wait_for_function(RESULTS_SHOWN_JS)
            example_shot = screenshot_dir / "space_example.png"
            page.screenshot(path=str(example_shot), full_page=True)
            example_text = _label_text(page, "metaprompt-probs")
        finally:
            browser.close()

    print(f"\nscreenshots: {result_shot} (result), {error_shot} (error message), {example_shot} (example)")
    classes = [c.strip() for c in CLASSES.split(",")]
    for text in (metaprompt, zero_shot):
        shown = [c for c in classes if c in text]
        # The label shows the top class as its heading and the top 5 classes with percentages.
        assert len(shown) == len(classes), text
        assert text.count("%") == len(classes), text
    assert "MetaPrompt" in metaprompt and "Zero-shot CLIP" in zero_shot
    digits = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert sum(d in example_text.split() for d in digits) == 5, example_text  # top 5 of the ten digit classes


# (class text typed, literal text the toast must show): user text is shown as text, never as HTML.
HOSTILE_TOASTS = [
    ("<img src=x id=injected><a id=injected-link href=https://evil.example>Session expired: log in</a>", "<img src=x"),
    ("<b id=injected>cat</b>, <B ID=INJECTED>CAT</B>", "Duplicate class name: '<b id=injected>cat</b>'"),
]


def test_error_toasts_show_user_text_as_text(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(app_url, wait_until="networkidle")
            page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLE))
            page.locator("#input-image img").first.wait_for(state="visible")
            for class_text, literal in HOSTILE_TOASTS:
                page.locator("#class-names textarea").fill(class_text)
                page.locator("#classify-button").click()
                message = page.get_by_text(literal).first
                message.wait_for(state="visible")
                assert page.locator("#injected, #injected-link").count() == 0  # no element made from user text
                page.locator(".toast-close").first.click()
                message.wait_for(state="detached")
        finally:
            browser.close()
