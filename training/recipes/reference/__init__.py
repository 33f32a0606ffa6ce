"""The reference recipe, the default: register each photo to its product's genuine reference and compare
it, location by location, with the registered genuine photos. No epochs, no gradient.

Read top to bottom: lite0.py (frozen ImageNet features), photometric.py (the colour check's light fit),
hue.py (the hue check), model.py (the exported graph that fuses them), statistics.py (what it learns from
each product's genuines), fit.py (the recipe: products, references, statistics, calibration on val).
"""
