"""One vocabulary: the verdict and label words of inference/classes.py are the ones the Literal types, the
API schema, the evidence store, the metrics and the Prometheus series use, and the batch size is one number."""

from __future__ import annotations

import inspect
from typing import get_args

import numpy as np
import pytest

from evidence_store import records
from inference import classes
from inference.classes import (
    CLASSES,
    COUNTERFEIT,
    GENUINE,
    INCONCLUSIVE,
    OUTCOME_LABELS,
    RETAKE,
    SCORED_VERDICTS,
    VERDICTS,
    OutcomeLabel,
    Verdict,
)
from inference.metadata import Thresholds
from inference.metrics import decision_metrics
from inference.predictor import MAX_BATCH, verdict_for


@pytest.fixture(scope="module")
def openapi() -> dict:
    from api.app import create_app
    from api.settings import Settings

    return create_app(Settings()).openapi()


def _enum(schema: dict) -> list[str]:
    """The enum of a property or parameter schema, also when it is optional (anyOf [enum, null])."""
    if "enum" in schema:
        return schema["enum"]
    (found,) = [option["enum"] for option in schema.get("anyOf", []) if "enum" in option]
    return found


def test_literals_spell_the_tuples_word_for_word_in_order():
    assert get_args(Verdict) == VERDICTS
    assert get_args(OutcomeLabel) == OUTCOME_LABELS
    assert get_args(records.RecordKind) == records.KINDS


def test_the_tuples_are_built_from_the_words():
    assert CLASSES == (GENUINE, COUNTERFEIT)  # the model's logit order: never reorder
    assert SCORED_VERDICTS == (GENUINE, COUNTERFEIT, INCONCLUSIVE)
    assert VERDICTS == (*SCORED_VERDICTS, RETAKE)
    assert OUTCOME_LABELS == (*CLASSES, classes.UNKNOWN)
    for words in (CLASSES, SCORED_VERDICTS, VERDICTS, OUTCOME_LABELS):
        assert len(set(words)) == len(words)


def test_the_evidence_store_checks_against_the_same_tuples():
    assert records.VERDICTS is VERDICTS
    assert records.OUTCOME_LABELS is OUTCOME_LABELS


def test_api_schema_offers_exactly_the_vocabulary(openapi):
    schemas = openapi["components"]["schemas"]
    assert _enum(schemas["Inspection"]["properties"]["verdict"]) == list(VERDICTS)
    assert _enum(schemas["ScreeningResult"]["properties"]["verdict"]) == list(VERDICTS)
    assert _enum(schemas["OutcomeIn"]["properties"]["label"]) == list(OUTCOME_LABELS)
    query = {p["name"]: p["schema"] for p in openapi["paths"]["/v1/inspections"]["get"]["parameters"]}
    assert _enum(query["verdict"]) == list(VERDICTS)
    assert _enum(query["kind"]) == list(records.KINDS)


def test_prometheus_counts_every_verdict_and_nothing_else():
    from api.observability import Metrics

    metrics = Metrics()
    for verdict in VERDICTS:
        metrics.count_verdict(verdict)
    with pytest.raises(ValueError, match="unknown verdict"):
        metrics.count_verdict("error")


def test_a_score_is_answered_with_a_scored_verdict_only():
    thresholds = Thresholds(low=0.3, high=0.7)
    said = {verdict_for(score, thresholds) for score in np.linspace(0, 1, 11)}
    assert said == set(SCORED_VERDICTS)


def test_confusion_matrix_is_classes_by_scored_verdicts():
    verdicts = np.array([GENUINE, COUNTERFEIT, INCONCLUSIVE, COUNTERFEIT])
    confusion = decision_metrics(verdicts, np.array([0, 1, 1, 0]))["confusion"]
    assert list(confusion) == list(CLASSES)
    assert all(list(row) == list(SCORED_VERDICTS) for row in confusion.values())
    assert confusion[GENUINE][COUNTERFEIT] == 1 and confusion[COUNTERFEIT][INCONCLUSIVE] == 1


def test_one_batch_size_for_the_settings_and_the_batcher():
    from api.batching import Batcher
    from api.settings import Settings

    assert Settings.model_fields["max_batch"].default == MAX_BATCH
    assert inspect.signature(Batcher).parameters["max_batch"].default == MAX_BATCH
