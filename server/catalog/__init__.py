"""catalog feature package."""
