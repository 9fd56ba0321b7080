"""Training tools for the data staff (torch and ultralytics, in the ``train`` extra only)."""
