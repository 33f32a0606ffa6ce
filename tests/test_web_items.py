"""The web page's item card in a real browser (headless Chromium via Playwright, as tests/test_web.py):
photograph sides one by one, check the item through POST /v1/items, see each side's answer and the item's
verdict, retake one side, record the item's outcome."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from test_web import browser, close, open_page, screenshot, start_server  # noqa: F401 (browser: a fixture)

from web_helpers import PHONE

VERDICT_WORDS = {"Genuine", "Counterfeit", "Inconclusive"}


@pytest.fixture(scope="module")
def sides(tmp_path_factory) -> dict[str, Path]:
    """640x480 synth photos of one product (a phone's size, so the default quality gate applies), and a
    dark blurred copy the quality gate asks to retake."""
    from PIL import Image, ImageFilter

    from datatools.synth import write_dataset

    root = tmp_path_factory.mktemp("item-photos")
    write_dataset(root, seed=5, products=1, n_train=2, n_val=2, n_test=4, progress=False)
    genuine = sorted((root / "test" / "genuine").rglob("*.jpg"))
    found = {"front": genuine[0], "back": genuine[1]}
    with Image.open(genuine[0]) as photo:
        found["poor"] = root / "poor.png"
        photo.filter(ImageFilter.GaussianBlur(8)).point(lambda v: v // 6).save(found["poor"])
    return found


# The classifier's model: these tests are about the page; a whole-frame model scores any photo.
@pytest.fixture(scope="module")
def server(classifier_model, tmp_path_factory):
    server = start_server(classifier_model, tmp_path_factory.mktemp("item-evidence"))
    yield server.url
    server.stop()


def item_page(browser, url):  # noqa: F811 (browser: the fixture's value)
    return open_page(browser, url, PHONE, is_mobile=True, has_touch=True)


def check(page) -> None:
    page.click("#item-check")
    page.wait_for_selector("#item-result:not([hidden]), #item-error:not([hidden])", state="visible")


def item_id(page) -> str:
    return re.search(r"item (\S+)$", page.text_content("#item-facts")).group(1)


def test_sides_one_by_one_then_one_verdict_and_each_sides_answer(browser, server, sides):  # noqa: F811
    page = item_page(browser, server)
    assert page.is_disabled("#item-check")
    page.set_input_files("#item-photo-input", str(sides["front"]))  # the camera button, one side at a time
    assert page.is_disabled("#item-check")  # one side is not an item
    page.set_input_files("#item-file-input", str(sides["back"]))
    assert page.locator("#item-sides li").count() == 2
    assert page.text_content("#item-sides li:nth-child(2) .item-side__result") == "Not checked yet."
    check(page)
    assert page.is_hidden("#item-error"), page.text_content("#item-error")
    assert page.text_content("#item-verdict-word") in VERDICT_WORDS
    for row in range(1, 3):
        chip = page.text_content(f"#item-sides li:nth-child({row}) .chip")
        assert chip in VERDICT_WORDS and "score" in page.text_content(f"#item-sides li:nth-child({row})")
    screenshot(page, "item-phone.png")
    kept = httpx.get(f"{server}/v1/items/{item_id(page)}").json()
    assert len(kept["photos"]) == 2 and kept["verdict"] == page.text_content("#item-verdict-word").lower()
    page.click("#item-outcome button[data-label=counterfeit]")
    page.wait_for_selector("#item-outcome-status[data-state=ok]")
    assert httpx.get(f"{server}/v1/items/{item_id(page)}").json()["outcome"] == "counterfeit"
    close(page)


def test_a_poor_side_is_named_and_can_be_retaken_alone(browser, server, sides):  # noqa: F811
    page = item_page(browser, server)
    page.set_input_files("#item-file-input", [str(sides["front"]), str(sides["poor"])])
    check(page)
    assert page.text_content("#item-verdict-word") == "Retake"
    assert "photo 2" in page.text_content("#item-message")
    assert page.text_content("#item-sides li:nth-child(2) .chip") == "Retake"
    assert page.is_hidden("#item-outcome")  # a retake is no evidence of what the item is
    # the side's button is not called "Retake", the verdict's word (issue 23)
    assert page.text_content("#item-sides li:nth-child(2) label:has(.item-side__replace)").strip() == "Replace photo"
    page.set_input_files("#item-sides li:nth-child(2) .item-side__replace", str(sides["back"]))
    assert page.is_hidden("#item-result")  # the old verdict no longer describes these sides
    check(page)
    assert page.text_content("#item-verdict-word") in VERDICT_WORDS
    close(page)


def test_at_most_eight_sides(browser, server, sides):  # noqa: F811
    page = item_page(browser, server)
    page.set_input_files("#item-file-input", [str(sides["front"])] * 9)
    assert page.locator("#item-sides li").count() == 8
    assert "at most 8" in page.text_content("#item-error")
    assert page.is_disabled("#item-file-input")
    page.click("#item-sides li:nth-child(1) .item-side__remove")
    assert page.locator("#item-sides li").count() == 7 and page.is_enabled("#item-file-input")
    close(page)
