"""trayscan: the self-service checkout terminal for staff canteens."""

__version__ = "0.1.0"
