"""Payments: the checkout seam (Stripe Checkout or the built-in demo checkout), opening a
checkout for an order, verified webhooks stored once, the return page and the demo page."""
