"""The catalog: uploaded menus turned into versioned products, and the public menu.

``model`` domain types and ``money`` currency facts; ``fields``, ``parse`` and ``exports`` the
pure file parsing (CSV, JSON, Shopify, WooCommerce) with line-numbered errors; ``service`` the
import command and the menu queries; ``routes`` the upload and menu endpoints.
"""
