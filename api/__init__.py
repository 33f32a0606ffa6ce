"""The HTTP layer: the FastAPI app (app.py), its routes, settings, middleware and the inspector's web page.

It serves an inference.predictor.Predictor and records into evidence_store; it imports no torch.
"""
