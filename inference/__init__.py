"""Serving side of counterfeit-detector: torch-free (numpy, Pillow, onnxruntime, FastAPI)."""
