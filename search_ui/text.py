"""Formatting for the pages: captions and markdown escaping of untrusted names.

File names and EXIF strings come from the photo folders, so they are escaped or put in code
spans before Streamlit renders them as markdown; control characters and bidi overrides are
escaped first by `indexer.text.printable`, the one escaper the CLI uses too.
"""

from __future__ import annotations

import os
import re
from typing import Any

from indexer.text import printable

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def md(text: object) -> str:
    """Escape text for Streamlit markdown (file names and EXIF strings are untrusted).

    Without it a name like `[x](http://…)` or `$…$` would render as a link or as LaTeX.
    """
    return _MD_SPECIAL.sub(r"\\\1", printable(text))


def code(text: object) -> str:
    """Text as a markdown code span: shown literally, whatever backticks it holds."""
    text = printable(text)
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def describe(rec: dict[str, Any]) -> str:
    """One caption line for a picture: folder, dimensions, date taken.

    Works for search hits and dedup report members alike.
    """
    folder = os.path.dirname(rec["path"])
    date = (rec.get("taken_at") or "")[:10] or "no date"
    return md(folder) + f" · {rec.get('width')}×{rec.get('height')} · {date}"
