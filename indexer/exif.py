"""Date taken and camera from EXIF: one reader for every format (Pillow's pictures, RAW files).

A broken or missing tag is no date or no camera, never a broken picture.
"""

from __future__ import annotations

from datetime import datetime

from PIL import Image

_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 36867
_DATETIME = 306
_MAKE = 271
_MODEL = 272


def taken_and_camera(exif: Image.Exif | None) -> tuple[str | None, str | None]:
    """(date taken as ISO text, "Make Model") from an EXIF block; None for what is missing.

    The make is dropped when the model already starts with it ("Canon Canon EOS R5").
    """
    if not exif:
        return None, None
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # noqa: BLE001 - a broken EXIF sub-IFD is no date, not a broken image
        sub = {}
    taken = parse_date(sub.get(_DATETIME_ORIGINAL) or exif.get(_DATETIME))
    make = str(exif.get(_MAKE) or "").strip("\x00 ").strip()
    model = str(exif.get(_MODEL) or "").strip("\x00 ").strip()
    if model and make and model.lower().startswith(make.lower().split()[0]):
        make = ""
    return taken, " ".join(p for p in (make, model) if p) or None


def parse_date(value: object) -> str | None:
    """An EXIF date ("2021:06:05 14:03:01") as ISO text, or None when it is not one."""
    if not value:
        return None
    text = str(value).strip("\x00 ").strip()
    for pattern in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d"):
        try:
            return datetime.strptime(text[:19], pattern).isoformat()
        except ValueError:
            continue
    return None
