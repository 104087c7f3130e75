"""orders feature package."""
