"""Shop Assist: a conversational shop server."""

__version__ = "0.1.0"
