"""Shops: creation with a unique slug, the links an owner shares (hosted page, embed snippet,
QR codes), and the pages customers reach (widget loader, embed, hosted page)."""
