"""owners feature package."""
