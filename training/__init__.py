"""Training side of counterfeit-detector (torch, torchvision, onnx)."""
