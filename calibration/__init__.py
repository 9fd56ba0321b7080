"""Camera and scale calibration, writing per-terminal profiles."""
