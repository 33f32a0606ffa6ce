"""The classifier recipe: a torchvision CNN trained end to end on the whole frame, epoch by epoch.

Read model.py (the network, its weights, its export graph), then fit.py (what one training loop is made of;
the epochs themselves are training/train.py's). It stays at chance on packaging photos (README, "Model
quality"): the reference recipe is the default.
"""
