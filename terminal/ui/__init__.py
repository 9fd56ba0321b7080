"""The Qt screens; the only package that may import PySide6 (built with the kiosk screens issue)."""
