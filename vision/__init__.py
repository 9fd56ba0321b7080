"""trayscan's vision: frames, tray watching, dish detection and identification.

Imports numpy, OpenCV and ONNX Runtime only; never Qt, never torch.
"""
