"""QR codes of a shop's hosted page, as SVG or PNG. Pure: text in, bytes out."""

from __future__ import annotations

import io
from functools import lru_cache

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_M


def _code(url: str) -> qrcode.QRCode:
    # Medium error correction survives a smudged print without making the code dense.
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=10, border=4)
    code.add_data(url)
    code.make(fit=True)
    return code


@lru_cache(maxsize=256)
def qr_svg(url: str) -> bytes:
    """An SVG QR code (one path, scales to any print size)."""
    image = _code(url).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    buf = io.BytesIO()
    image.save(buf)
    return buf.getvalue()


@lru_cache(maxsize=256)
def qr_png(url: str) -> bytes:
    """A black-on-white PNG QR code, 10 pixels per module."""
    image = _code(url).make_image(fill_color="black", back_color="white")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
