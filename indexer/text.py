"""Text for people: file names and messages made safe to print on a terminal or a page.

File names can hold any byte; printed raw, ESC/OSC sequences retitle or repaint a terminal and
bidi overrides reorder what a reader sees. Every human-readable output goes through `printable`.
"""

from __future__ import annotations


def printable(text: object) -> str:
    """`text` with control characters shown as escapes: ESC as the 4 characters `\\x1b`.

    Escapes C0 (`\\n`, `\\t`, `\\r`, `\\xNN`), DEL, C1, the Unicode bidi controls and line
    separators (`\\uNNNN`) and undecodable bytes of a file name (surrogateescape, `\\xNN`);
    every other character, spaces of all kinds included, prints as it is. Self-contained (no
    module names used): the quarantine script carries a copy of its source.
    """
    text = str(text)
    if text.isascii() and text.isprintable():
        return text
    out = []
    for ch in text:
        o = ord(ch)
        if ch in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[ch])
        elif o < 0x20 or 0x7F <= o < 0xA0:
            out.append(f"\\x{o:02x}")
        elif 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode)
            out.append(f"\\x{o - 0xDC00:02x}")
        elif (
            0xD800 <= o <= 0xDFFF
            or o in (0x061C, 0x200E, 0x200F, 0x2028, 0x2029)
            or 0x202A <= o <= 0x202E
            or 0x2066 <= o <= 0x2069
        ):
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def plural(n: int, one: str, many: str | None = None) -> str:
    """'1 file', '2 files', '1,204 photos' (`many` for irregular words: plural(n, 'copy',
    'copies'))."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"
