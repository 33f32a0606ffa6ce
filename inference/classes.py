"""The one vocabulary of labels and verdicts: data folders, training, the model file, the API, the evidence
log and the metrics all take their words from here.

The Literal types spell the same words again, because a type checker only reads literal strings;
tests/test_vocabulary.py checks that each Literal and its tuple agree, word for word and in order.
"""

from typing import Literal

GENUINE = "genuine"
COUNTERFEIT = "counterfeit"
INCONCLUSIVE = "inconclusive"  # scored, but between the thresholds: a human has to look
RETAKE = "retake"  # not scored: the photo is too poor to judge, or shows none of a reference model's products
UNKNOWN = "unknown"  # an investigation's outcome when it could not establish either class

# Index order of the model's logits; folder names of the ImageFolder layout.
CLASSES: tuple[str, str] = (GENUINE, COUNTERFEIT)
# What a score is answered with (inference.predictor.verdict_for): the columns of the confusion matrix.
SCORED_VERDICTS: tuple[str, str, str] = (GENUINE, COUNTERFEIT, INCONCLUSIVE)
# Every verdict the service gives: a scored one, or RETAKE without a score.
VERDICTS: tuple[str, str, str, str] = (*SCORED_VERDICTS, RETAKE)
# What an investigation later established about a record (the evidence log's outcomes).
OUTCOME_LABELS: tuple[str, str, str] = (*CLASSES, UNKNOWN)

Verdict = Literal["genuine", "counterfeit", "inconclusive", "retake"]  # = VERDICTS
OutcomeLabel = Literal["genuine", "counterfeit", "unknown"]  # = OUTCOME_LABELS
