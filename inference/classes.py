"""The label vocabulary shared by data folders, training, the model file and the API."""

GENUINE = "genuine"
COUNTERFEIT = "counterfeit"
# Index order of the model's logits; folder names of the ImageFolder layout.
CLASSES: tuple[str, str] = (GENUINE, COUNTERFEIT)
INCONCLUSIVE = "inconclusive"
VERDICTS: tuple[str, str, str] = (GENUINE, COUNTERFEIT, INCONCLUSIVE)
