"""The item combination maths (inference/items.py) and the item checks (api/item_checks.py), without HTTP."""

import numpy as np
import pytest

from api.item_checks import line_of, missing_side, mixed_products, photo_retake
from api.schemas import ItemPhoto
from inference.items import Combiner, combine, combiner_of, fit_combiner, form_items
from inference.metadata import Thresholds

THRESHOLDS = Thresholds(low=0.2, high=0.8)


def test_without_item_calibration_the_item_is_its_worst_photo():
    assert combine([0.1, 0.15], THRESHOLDS, None) == 0.15  # every photo genuine -> genuine
    assert combine([0.1, 0.5], THRESHOLDS, None) == 0.5  # one undecided -> undecided
    assert combine([0.1, 0.1, 0.9], THRESHOLDS, None) == 0.9  # one counterfeit -> counterfeit


def test_strong_counterfeit_evidence_is_never_averaged_away():
    # A rule that trusts the mean far more than the strongest side would call this item genuine...
    averaging = Combiner(weight_max=0.0, weight_mean=1.0, bias=-2.0)
    photos = [0.97, 0.01, 0.01, 0.01]
    assert averaging.score(photos) < THRESHOLDS.low
    # ...but a side the model calls counterfeit on its own keeps the item counterfeit.
    assert combine(photos, THRESHOLDS, averaging) >= 0.97
    # Below the high threshold the fitted rule decides.
    assert combine([0.6, 0.01], THRESHOLDS, averaging) == pytest.approx(averaging.score([0.6, 0.01]))


def test_fit_separates_items_with_one_edited_side_and_keeps_weights_non_negative():
    rng = np.random.default_rng(0)
    groups = {f"p{k}": (rng.uniform(0.05, 0.5, 8), rng.uniform(0.4, 0.95, 6)) for k in range(4)}
    items, labels = form_items(groups, seed=1)
    assert set(labels) == {0, 1} and all(2 <= len(item) <= 4 for item in items)
    fake_items = [item for item, label in zip(items, labels) if label == 1]
    genuine_values = {float(v) for g, _ in groups.values() for v in g}
    # a counterfeit item is exactly one edited photo among genuines of the same product
    assert all(sum(float(v) not in genuine_values for v in item) == 1 for item in fake_items)
    combiner = fit_combiner(items, labels)
    assert combiner.weight_max >= 0 and combiner.weight_mean >= 0 and combiner.items == len(items)
    scores = np.array([combiner.score(item) for item in items])
    assert scores[np.array(labels) == 1].mean() > scores[np.array(labels) == 0].mean() + 0.2


def test_fit_needs_both_classes_and_a_bad_stored_rule_falls_back():
    with pytest.raises(ValueError, match="genuine and counterfeit items"):
        fit_combiner([[0.1, 0.2]], [0])
    assert combiner_of({}) is None
    assert combiner_of({"item_combiner": {"weight_max": -1, "weight_mean": 1, "bias": 0}}) is None
    stored = Combiner(1.0, 0.5, -0.2, 10)
    assert combiner_of({"item_combiner": stored.to_dict()}) == stored


def photo(verdict="genuine", product="juice-1", message="Good photo."):
    return ItemPhoto(verdict=verdict, score=None if verdict == "retake" else 0.1,
                     thresholds={"low": 0.2, "high": 0.8}, model={"name": "m", "version": "v"},
                     image={"sha256": "0" * 64, "width": 320, "height": 240},
                     quality={"ok": verdict != "retake", "reasons": [], "message": message, "measures": {}},
                     product=None if verdict == "retake" else product)


class Meta:
    """The two things the checks read from ModelMetadata."""

    def __init__(self, lines):
        self.product_lines = lines

    def line_of(self, product):
        return next((line for line, sides in self.product_lines.items() if product in sides), None)


def test_retake_names_the_photo_and_what_to_do():
    retake = photo_retake([photo(), photo("retake", message="Too blurry: hold the phone still.")])
    assert retake.reason == "photo_retake" and "photo 2" in retake.message and "hold the phone still" in retake.message
    assert photo_retake([photo(), photo()]) is None


def test_mixed_products_and_missing_sides():
    lines = Meta({"juice": ("juice-1", "juice-2", "juice-3"), "milk": ("milk",)})
    mixed = mixed_products([photo(product="juice-1"), photo(product="juice-2"), photo(product="milk")], lines)
    assert mixed.reason == "mixed_products" and "photo 3 shows milk" in mixed.message and "most show juice" in mixed.message
    assert mixed_products([photo(product="juice-1"), photo(product="juice-3")], lines) is None
    missing = missing_side([photo(product="juice-1"), photo(product="juice-3")], lines)
    assert missing.reason == "missing_side" and missing.missing_sides == ("juice-2",) and "juice-2" in missing.message
    assert missing_side([photo(product="juice-1"), photo(product="juice-2"), photo(product="juice-3")], lines) is None


def test_a_model_without_product_lines_reads_the_reference_fits_face_names():
    none = Meta({})
    assert line_of(none, "Bravo-Apple-Juice-3") == line_of(none, "Bravo-Apple-Juice-1") == "Bravo-Apple-Juice"
    assert mixed_products([photo(product="Bravo-Apple-Juice-1"), photo(product="Bravo-Apple-Juice-2")], none) is None
    assert mixed_products([photo(product="Bravo-Apple-Juice-1"), photo(product="Arla-Sour-Cream")], none) is not None
    assert missing_side([photo(product="Bravo-Apple-Juice-1"), photo(product="Bravo-Apple-Juice-1")], none) is None


def test_item_thresholds_come_from_the_calibration_and_a_counterfeit_side_still_reaches_them():
    from inference.items import item_thresholds

    strict = Combiner(1.0, 0.0, 0.0, thresholds=Thresholds(low=0.05, high=0.95))
    assert item_thresholds(THRESHOLDS, strict) == Thresholds(0.05, 0.95)
    assert item_thresholds(THRESHOLDS, None) == THRESHOLDS
    # a photo at 0.85 is counterfeit for the model (high 0.8): the item scores at least the item's high
    assert combine([0.85, 0.01], THRESHOLDS, strict) >= 0.95
    assert Combiner.from_dict(strict.to_dict()) == strict
