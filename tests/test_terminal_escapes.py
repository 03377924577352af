"""File names with terminal control sequences are printed escaped, never raw.

`ESC ] 0 ; pwned BEL` in a name would retitle the terminal, `ESC [ 2 J` clear it, a bidi
override reorder what the user reads. Human-readable output shows them as `\\x1b`, `\\u202e`;
`--json` output stays exact (JSON escapes control characters itself).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import PHOTOS, TINY_BIRDER, index_cli

from indexer.text import printable
from search_ui.text import code, md

OSC = "\x1b]0;pwned\x07"
RAW = (b"\x1b", b"\x07", b"\x9b", "\u202e".encode())


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain name.jpg", "plain name.jpg"),
        (OSC + ".jpg", "\\x1b]0;pwned\\x07.jpg"),
        ("new\nline\ttab\rcr", "new\\nline\\ttab\\rcr"),
        ("del\x7f c1\x9b[2J", "del\\x7f c1\\x9b[2J"),
        ("gpj.\u202eevil", "gpj.\\u202eevil"),
        ("\u2066iso\u2069 \u200fmark \u2028sep", "\\u2066iso\\u2069 \\u200fmark \\u2028sep"),
        (os.fsdecode(b"caf\xe9"), "caf\\xe9"),
        *[(kept, kept) for kept in ("Shot 10.00.00\u202fAM ケーキ 📷 café\u00a0 x",)],
    ],
)
def test_printable(raw, shown):
    assert printable(raw) == shown
    assert printable(shown) == shown  # already printable: unchanged


def test_ui_text_uses_the_same_escaper():
    assert "\x1b" not in md(OSC) and "x1b" in md(OSC)
    assert code(OSC + "\n`x`") == "`` \\x1b]0;pwned\\x07\\n`x` ``"


def cli(*args: object) -> subprocess.CompletedProcess:
    """`index ARGS...` with its output as bytes (what a terminal would be sent)."""
    return index_cli(*args, text=False)


def assert_escaped(result: subprocess.CompletedProcess, *expected: bytes) -> None:
    for stream in (result.stdout, result.stderr):
        assert not any(raw in stream for raw in RAW), stream
    for text in expected:
        assert text in result.stdout + result.stderr, (text, result.stdout, result.stderr)


def test_commands_print_hostile_names_escaped(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copyfile(PHOTOS / "flat" / "cat.jpg", lib / (OSC + ".jpg"))
    shutil.copyfile(PHOTOS / "flat" / "cat.jpg", lib / "cat \u202egpj.jpg")
    jpeg = (PHOTOS / "flat" / "cake.jpg").read_bytes()
    (lib / "\x1b[2Jbroken\x9b.jpg").write_bytes(jpeg[: len(jpeg) // 3])  # ledgered
    index = tmp_path / "index"
    shown_osc, shown_bidi = b"\\x1b]0;pwned\\x07.jpg", b"cat \\u202egpj.jpg"
    built = cli("build", lib, "--index", index, "--weights", TINY_BIRDER, "--workers", "1")
    assert built.returncode == 3
    assert_escaped(built)
    found = cli("search", lib / "cat \u202egpj.jpg", "--index", index, "-k", "2", "--all-copies")
    assert found.returncode == 0
    assert_escaped(found, shown_osc, shown_bidi)
    dedup = cli("dedup", "--index", index)
    assert dedup.returncode == 0
    assert_escaped(dedup, shown_osc, shown_bidi)
    failures = cli("failures", "--index", index)
    assert failures.returncode == 0
    assert_escaped(failures, b"\\x1b[2Jbroken\\x9b.jpg: [decode]")
    missing = cli("search", lib / (OSC + "gone.jpg"), "--index", index)
    assert missing.returncode == 1
    assert_escaped(missing, b"\\x1b]0;pwned\\x07gone.jpg")
    as_json = cli("search", lib / (OSC + ".jpg"), "--index", index, "-k", "2", "--json")
    paths = {p for hit in json.loads(as_json.stdout) for p in [hit["path"], *hit["copies"]]}
    assert paths == {str(lib / (OSC + ".jpg")), str(lib / "cat \u202egpj.jpg")}
    (lib / (OSC + ".jpg")).unlink()
    verify = cli("verify", "--index", index)
    assert verify.returncode == 1
    assert_escaped(verify, b"  " + str(lib).encode() + b"/" + shown_osc)
