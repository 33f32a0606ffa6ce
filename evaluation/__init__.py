"""Measuring a model file on labelled photos: metrics and report (evaluate, report), benign photo changes
(robustness), and bulk screening of folders (screen). Torch-free, through the same pipeline as serving."""
