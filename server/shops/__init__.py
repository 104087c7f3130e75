"""shops feature package."""
