"""Device drivers (scales, card readers, face matcher) and their shipped fakes."""
