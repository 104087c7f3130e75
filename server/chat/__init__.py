"""chat feature package."""
