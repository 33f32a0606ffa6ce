"""The page with the demo model itself, in headless Chromium (as tests/test_web.py): what an inspector sees
on a phone on the first run of `make run`. The demo's own sample photos, not the tiny test models: this is
about telling the truth with the model people meet first.

- The page says the model is a demo, and a demo verdict gives no advice to act on.
- The heatmap is on an absolute scale: a confident genuine shows no marks, a counterfeit's marks cover
  its defect (counterfeit-1.jpg: the brand word "CABISON" printed as "CBISON").
- On a 390x844 phone the verdict, its advice and the outcome buttons are on screen without scrolling.
"""

from __future__ import annotations

import pytest
from test_web import browser, close, in_viewport, inspect, start_server, tall_phone  # noqa: F401 (fixture)

from web_helpers import REPO

DEMO_MODEL = REPO / "inference" / "demo" / "model.onnx"
SAMPLES = REPO / "inference" / "demo" / "samples"
# Where counterfeit-1.jpg's misspelt brand word lies, as fractions of the photo's width and height: read
# off the photo by eye (the word sits on the carton's face, right of centre, a little below the middle).
DEFECT_BOX = (0.60, 0.44, 0.84, 0.62)
GRID = 60  # overlay samples per side: 3,600 points over the photo


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    server = start_server(DEMO_MODEL, tmp_path_factory.mktemp("demo-evidence"))
    yield server.url
    server.stop()


def marked_points(page) -> list[tuple[float, float]]:
    """The (x, y) fractions of a GRID x GRID sample of the overlay where anything is drawn (alpha > 0)."""
    return page.evaluate("""(grid) => {
        const canvas = document.getElementById('overlay');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        const marked = [];
        for (let j = 0; j < grid; j++) for (let i = 0; i < grid; i++) {
            const x = Math.floor((i + .5) / grid * canvas.width), y = Math.floor((j + .5) / grid * canvas.height);
            if (data[(y * canvas.width + x) * 4 + 3] > 0) marked.push([(i + .5) / grid, (j + .5) / grid]);
        }
        return marked;
    }""", GRID)


def check(page, photo: str) -> None:
    inspect(page, SAMPLES / photo)
    assert page.locator("#error").is_hidden(), page.inner_text("#error")
    page.wait_for_function("() => !document.getElementById('overlay-controls').hidden")


def test_the_demo_model_is_named_a_demo_and_its_verdict_is_no_evidence(browser, demo_server):  # noqa: F811
    page = tall_phone(browser, demo_server)
    page.wait_for_selector("#connection[data-state='ok']")
    assert page.inner_text("#model-notice") == "Demo model: synthetic photos only, not for real goods."
    assert page.locator("#model-notice").is_visible()
    check(page, "counterfeit-1.jpg")
    assert page.inner_text("#verdict-word") == "Counterfeit"
    assert page.inner_text("#verdict-kicker").lower() == "demo verdict, not evidence"
    # The score bar's ends read as scores, not as counts of photos ("0 genuine · 1 counterfeit" did).
    assert page.inner_text("#score-block .score__scale") == "from 0 (looks genuine) to 1 (looks counterfeit)"
    assert page.inner_text("#fact-validated") == "synthetic photos: 80 genuine, 80 counterfeit (counterfeits synthetic)"
    advice = page.inner_text("#verdict-advice")
    assert advice.startswith("Demo: not evidence.") and "seizure" not in advice and "Set the item aside" not in advice
    for selector in ("#verdict", "#verdict-advice", "#verdict-outcome [data-label='counterfeit']",
                     "#verdict-outcome [data-label='genuine']"):
        assert in_viewport(page, selector), f"{selector} is not on the 390x844 screen without scrolling"
    close(page)


def test_a_confident_genuine_shows_no_marks_and_a_counterfeit_is_marked_on_its_defect(browser, demo_server):  # noqa: F811
    page = tall_phone(browser, demo_server)
    check(page, "genuine-1.jpg")
    assert page.inner_text("#verdict-word") == "Genuine"
    assert len(marked_points(page)) <= GRID * GRID // 200, "a confident genuine is marked (over 0.5% of it)"

    check(page, "counterfeit-1.jpg")
    marked = marked_points(page)
    left, top, right, bottom = DEFECT_BOX
    on_defect = [(x, y) for x, y in marked if left <= x <= right and top <= y <= bottom]
    assert len(marked) > GRID * GRID // 200, "the counterfeit sample shows (almost) no marks"
    assert on_defect, f"no mark on the misspelt word; marks at {marked[:20]}"
    close(page)


def test_thumbnails_show_the_whole_photo(browser, demo_server):  # noqa: F811
    """Square thumbnails of 4:3 photos: cropped ("cover"), the product at a photo's edge was cut out."""
    page = tall_phone(browser, demo_server)
    check(page, "counterfeit-1.jpg")
    page.wait_for_selector("#recent-list .item__thumb")
    page.set_input_files("#item-photo-input", str(SAMPLES / "genuine-2.jpg"))
    page.wait_for_selector(".item-side__thumb")
    for selector in ("#recent-list .item__thumb", ".item-side__thumb"):
        fit = page.eval_on_selector(selector, "el => getComputedStyle(el).objectFit")
        assert fit == "contain", f"{selector} crops the photo (object-fit: {fit})"
    close(page)
