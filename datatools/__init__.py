"""Torch-free data tools: the data check (audit), the synthetic generator (synth), print-plausible edits of
real photos (edits) and the real-photo benchmark built from them (real_benchmark)."""
