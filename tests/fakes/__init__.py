"""Fake outside services that speak the real wire formats (OpenAI, Stripe)."""
