"""The web page names the product a reference model recognised, with the model's reference image beside
it (GET /v1/model's catalogue), so the inspector can confirm the match; whole-frame models show nothing."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from test_web import browser, close, inspect, phone  # noqa: F401 (browser: a fixture)

from conftest import TINY_PHOTO_SETTINGS
from web_helpers import web_server


@pytest.fixture(scope="module")
def reference_server(model_path, tmp_path_factory):
    """The default recipe's test model, with the quality gate the fixture's 320x240 photos pass."""
    env = {"COUNTERFEIT_API_KEYS": "[]", **{f"COUNTERFEIT_{key.upper()}": json.dumps(value)
                                           for key, value in TINY_PHOTO_SETTINGS.items()}}
    server = web_server(model_path, tmp_path_factory.mktemp("product-evidence"), env).wait_ready()
    yield server.url
    server.stop()


def test_the_recognised_product_is_shown_beside_its_reference(browser, reference_server, known_photos,  # noqa: F811
                                                               tmp_path):
    from playwright.sync_api import expect

    photo = tmp_path / "genuine.jpg"
    photo.write_bytes(known_photos["genuine"][0])
    catalogue = {entry["product"]: entry for entry in httpx.get(f"{reference_server}/v1/model").json()["catalogue"]}
    page = phone(browser, reference_server)
    expect(page.locator("#connection")).to_have_text(re.compile("Connected"))
    inspect(page, photo)
    assert page.locator("#error").is_hidden(), page.inner_text("#error")
    shown = page.inner_text("#product-name")
    assert shown in catalogue  # one of the model's products, as the API named it
    expect(page.locator("#product-match")).to_be_visible()
    reference = page.locator("#product-reference")
    expect(reference).to_be_visible()
    assert reference.get_attribute("src") == catalogue[shown]["reference_image"]
    assert reference.get_attribute("src").startswith("data:image/jpeg;base64,")
    assert page.evaluate("document.getElementById('product-reference').naturalWidth") > 0  # it decodes
    close(page)


def test_a_whole_frame_model_shows_no_product(browser, classifier_model, known_photos, tmp_path):  # noqa: F811
    server = web_server(classifier_model, tmp_path / "evidence", {"COUNTERFEIT_API_KEYS": "[]",
                                                                   "COUNTERFEIT_QUALITY_MIN_SIDE": "96"}).wait_ready()
    try:
        photo = tmp_path / "genuine.jpg"
        photo.write_bytes(known_photos["genuine"][0])
        page = phone(browser, server.url)
        inspect(page, photo)
        assert page.locator("#error").is_hidden(), page.inner_text("#error")
        assert page.locator("#product-match").is_hidden()
        close(page)
    finally:
        server.stop()
