"""Owners: accounts (passwords, sessions, CSRF, emailed links, API tokens), the dashboard, the
owner API and live orders. Every owner route reaches a shop only through its signed-in owner."""
