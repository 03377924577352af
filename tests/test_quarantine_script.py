"""The quarantine script on hostile names: no file name ever runs as code or breaks the script.

Real photos are copied under folders and names built to attack the old placeholder substitution
(`evil__GROUPS__` plus a name that closes a string literal, `trip__DEST__`), shells (`$(...)`,
backticks), terminals (ESC/OSC) and argument parsers (a leading `-`); the index is built with the
tiny checkpoint and the script written by `index dedup --quarantine-script`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PHOTOS, TINY_BIRDER, index_cli

from indexer.dedup.quarantine import quarantine_script

CRAFTED = 'X"+str(__import__("os").system("touch PWNED"))}]#.jpg'
HOSTILE = {  # folder: (two names for byte copies of one photo)
    "evil__GROUPS__": (CRAFTED, "a.jpg"),
    "trip__DEST__": ("__DEST__.jpg", "__GROUPS__.jpg"),
    'quotes " \' \\"': ('\'"\\".jpg', "\\\"');touch PWNED;#.jpg"),
    "$(touch PWNED)": ("`touch PWNED`.jpg", "$(touch PWNED).jpg"),
    "new\nline": ("line\nbreak.jpg", "__NAME__ __ROOT__ __PROTECTED__.jpg"),
    "\x1b]0;pwned\x07": ("\x1b[31mred\x1b[0m.jpg", "%(prog)s %s.jpg"),
    "-rf": ("-rf.jpg", "--apply.jpg"),
}
PICTURES = ["cat.jpg", "cake.jpg", "bee.jpg", "books.jpg", "camera.jpg", "tree.webp", "duck.jp2"]


def cli(*args: object) -> subprocess.CompletedProcess:
    """`index ARGS...` with its output as bytes (what a terminal would be sent)."""
    return index_cli(*args, text=False)


def run(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, timeout=60, cwd=cwd
    )


def files_of(folder: Path) -> dict[bytes, bytes]:
    """Every file under `folder` by its path bytes relative to it, with its content."""
    top = os.fsencode(folder)
    out = {}
    for parent, _, names in os.walk(top):
        for name in names:
            full = os.path.join(parent, name)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, top)] = fh.read()
    return out


def pwned(top: Path) -> list[Path]:
    return [p for p in top.rglob("*") if p.name.upper() == "PWNED"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A library of hostile names, its index, the JSON report and the quarantine script."""
    tmp = tmp_path_factory.mktemp("q")
    lib = tmp / "lib __TIERS__ '\" $(touch PWNED)"
    for (folder, names), picture in zip(HOSTILE.items(), PICTURES, strict=True):
        (lib / folder).mkdir(parents=True)
        for name in names:
            shutil.copyfile(PHOTOS / "flat" / picture, lib / folder / name)
    index, out = tmp / "index", tmp / "out"
    out.mkdir()
    built = cli("build", str(lib), "--index", str(index), "--weights", str(TINY_BIRDER),
                "--workers", "1", "-q")  # fmt: skip
    assert built.returncode == 0, built.stderr
    script = out / "q.py"
    made = cli("dedup", "--index", str(index), "-o", str(out / "r.json"),
               "--quarantine-script", str(script))  # fmt: skip
    assert made.returncode == 0, made.stderr
    report = json.loads((out / "r.json").read_text())
    return tmp, lib, script, report


def test_hostile_names_never_run_as_code(hostile):
    tmp, lib, script, report = hostile
    text = script.read_text()
    compile(text, str(script), "exec")  # never a SyntaxError
    code, blob = text.split('PLAN = """\n')
    assert re.fullmatch(r'[A-Za-z0-9+/=\n]*"""\s*if __name__ == "__main__":\s*sys.exit\(main\('
                        r"sys.argv\[1:\]\)\)\s*", blob)  # fmt: skip
    assert "__GROUPS__" not in code and "touch" not in code and str(lib) not in text
    work = tmp / "work"
    work.mkdir()
    for args in ((), ("--help",), ("--tiers", "exact")):
        result = run(script, *args, cwd=work)
        assert result.returncode == 0, result.stderr
        assert b"\x1b" not in result.stdout and b"\x07" not in result.stdout
    helped = run(script, "--help", cwd=work).stdout.decode()
    assert f"ROOT: {lib}\nDEST (default): {lib}-quarantine\n" in helped
    dry = run(script, "--tiers", "exact", cwd=work).stdout.decode()
    assert "\\x1b]0;pwned\\x07/" in dry and "new\\nline/" in dry
    assert f"would move {len(HOSTILE)} files" in dry
    assert not pwned(tmp)


def test_apply_moves_exactly_the_non_kept_copies_and_restores(hostile):
    tmp, lib, script, report = hostile
    exact = [g for g in report["groups"] if g["tier"] == "exact"]
    assert len(exact) == len(HOSTILE) and all(len(g["members"]) == 2 for g in exact)
    expected = {
        os.path.relpath(os.fsencode(m["path"]), os.fsencode(lib))
        for g in exact
        for m in g["members"]
        if m["path"] != g["keep"]
    }
    before, work, dest = files_of(lib), tmp / "work2", tmp / "-quarantine $(touch PWNED)"
    work.mkdir()
    moved = run(script, "--apply", "--tiers", "exact", str(dest), cwd=work)
    assert moved.returncode == 0, moved.stderr
    after, inside = files_of(lib), files_of(dest)
    assert set(inside) == expected  # the non-kept copy of each group, at its relative path
    assert {**after, **inside} == before and not set(after) & set(inside)  # byte-identical
    again = run(script, "--apply", "--tiers", "exact", str(dest), cwd=work)
    assert b"moved 0 files" in again.stdout and files_of(dest) == inside
    back = run(script, "--restore", "--apply", "--tiers", "exact", str(dest), cwd=work)
    assert back.returncode == 0 and f"moved {len(HOSTILE)} files".encode() in back.stdout
    assert files_of(lib) == before and not files_of(dest)
    assert not pwned(tmp)


def test_names_that_are_not_utf8_round_trip(tmp_path):
    """Paths travel as the base64 of their bytes: a non-UTF-8 name is moved under its own bytes."""
    folder = os.fsencode(tmp_path / "lib") + b"/caf\xe9 \xff"
    os.makedirs(folder)
    data = (PHOTOS / "flat" / "cat.jpg").read_bytes()
    paths = [os.path.dirname(folder) + b"/keep.jpg", folder + b"/\x80dup\xfe.jpg"]
    members = []
    for path in paths:
        with open(path, "wb") as fh:
            fh.write(data)
        st = os.stat(path)
        members.append({"path": os.fsdecode(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    report = {"groups": [{"id": 1, "tier": "exact", "keep": members[0]["path"],
                          "members": members}], "generated_at": "now"}  # fmt: skip
    script = tmp_path / "q.py"
    script.write_text(quarantine_script(report, "q.py"), encoding="ascii")
    dry = run(script, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert b"\\x80dup\\xfe.jpg" in dry.stdout and b"caf\\xe9 \\xff" in dry.stdout
    dest = os.fsencode(tmp_path / "quarantine")
    moved = run(script, "--apply", os.fsdecode(dest), cwd=tmp_path)
    assert moved.returncode == 0, moved.stderr
    assert os.listdir(dest + b"/caf\xe9 \xff") == [b"\x80dup\xfe.jpg"]
    assert not os.path.exists(paths[1]) and os.path.exists(paths[0])
    with open(dest + b"/caf\xe9 \xff/\x80dup\xfe.jpg", "rb") as fh:
        assert fh.read() == data


def test_the_code_is_a_constant_and_the_plan_is_plain_base64(tmp_path):
    """Two different reports give the same code; the plan decodes to the paths' bytes."""
    one = {"groups": [], "generated_at": "a"}
    two = {"groups": [{"id": 7, "tier": "exact", "keep": '/p/"__DEST__',
                       "members": [{"path": '/p/"__DEST__', "size": 1},
                                   {"path": "/p/\\\"'", "size": 1}]}],
           "generated_at": '"""'}  # fmt: skip
    a, b = quarantine_script(one, "q.py"), quarantine_script(two, 'x"""y.py')
    assert a.split('PLAN = """')[0] == b.split('PLAN = """')[0]
    plan = json.loads(base64.b64decode(b.split('PLAN = """')[1].split('"""')[0]))
    assert base64.b64decode(plan["groups"][0]["members"][1][0]) == b"/p/\\\"'"
    assert plan["name"] == 'x"""y.py' and base64.b64decode(plan["root"]) == b"/p"


@pytest.fixture
def tiered(tmp_path):
    """Real files in one group of each quarantined tier; the report made as `index dedup` would."""
    lib = tmp_path / "lib"
    (lib / "a").mkdir(parents=True)
    for name, picture in (("a/IMG_1.jpg", "cat.jpg"), ("a/IMG_1 (2).jpg", "cat.jpg"),
                          ("b.jpg", "bee.jpg"), ("b-small.jpg", "bee.jpg"),
                          ("c.jpg", "cake.jpg"), ("c-edit.jpg", "cake.jpg")):  # fmt: skip
        shutil.copyfile(PHOTOS / "flat" / picture, lib / name)
    (lib / "b-small.jpg").write_bytes((lib / "b-small.jpg").read_bytes() + b"\0")  # not exact
    (lib / "c-edit.jpg").write_bytes((lib / "c-edit.jpg").read_bytes() + b"\0\0")

    def member(name: str) -> dict:
        st = (lib / name).stat()
        return {"path": str(lib / name), "size": st.st_size, "mtime_ns": st.st_mtime_ns}

    groups = [(1, "exact", "a/IMG_1.jpg", "a/IMG_1 (2).jpg"),
              (2, "near-identical", "b.jpg", "b-small.jpg"),
              (3, "near-duplicate", "c.jpg", "c-edit.jpg")]  # fmt: skip
    report = {"generated_at": "now", "groups": [
        {"id": i, "tier": tier, "keep": str(lib / keep), "members": [member(keep), member(dup)]}
        for i, tier, keep, dup in groups]}  # fmt: skip
    script = tmp_path / "q.py"
    script.write_text(quarantine_script(report, "q.py"), encoding="ascii")
    return tmp_path, lib, script


def test_near_duplicates_move_only_when_named_and_lines_name_tier_and_keeper(tiered):
    tmp, lib, script = tiered
    dest = tmp / "Q"
    dry = run(script, str(dest), cwd=tmp)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.decode().splitlines()
    assert lines == [
        f"would move [exact] {lib}/a/IMG_1 (2).jpg -> {dest}/a/IMG_1 (2).jpg  "
        f"(keeping {lib}/a/IMG_1.jpg)",
        f"would move [near-identical] {lib}/b-small.jpg -> {dest}/b-small.jpg  "
        f"(keeping {lib}/b.jpg)",
        "would move 2 files; 0 skipped; 0 failed (dry run: add --apply to move)",
    ]
    helped = " ".join(run(script, "--help", cwd=tmp).stdout.decode().split()).replace("- ", "-")
    assert "(default exact,near-identical; near-duplicate only when named)" in helped
    every = "exact,near-identical,near-duplicate"
    moved = run(script, "--apply", "--tiers", every, str(dest), cwd=tmp)
    assert moved.returncode == 0, moved.stderr
    assert (
        f"move [near-duplicate] {lib}/c-edit.jpg -> {dest}/c-edit.jpg  (keeping {lib}/c.jpg)"
        in (moved.stdout.decode().splitlines())
    )
    assert sorted(files_of(dest)) == [b"a/IMG_1 (2).jpg", b"b-small.jpg", b"c-edit.jpg"]
    assert sorted(files_of(lib)) == [b"a/IMG_1.jpg", b"b.jpg", b"c.jpg"]


def test_a_destination_inside_the_indexed_folder_is_refused(tiered):
    tmp, lib, script = tiered
    before = files_of(lib)
    (tmp / "link").symlink_to(lib)  # the same folder under another name
    for dest in (lib / "quarantine", lib, tmp / "link" / "q"):
        out = run(script, "--apply", str(dest), cwd=tmp)
        assert out.returncode == 2 and not out.stdout
        assert out.stderr.decode().splitlines() == [
            f"refused: {dest} is inside the indexed folder {lib}; choose a folder outside it"
        ]
        assert files_of(lib) == before and not (lib / "quarantine").exists()
    beside = run(script, "--apply", cwd=tmp)  # the default: a folder beside the photos
    assert beside.returncode == 0 and b"moved 2 files" in beside.stdout
    assert sorted(files_of(tmp / "lib-quarantine")) == [b"a/IMG_1 (2).jpg", b"b-small.jpg"]


def test_roots_of_files_on_two_top_folders_each_refused():
    """When the common root is `/`, the top folders holding the files are the ones refused."""
    report = {"groups": [{"id": 1, "tier": "exact", "keep": "/mnt/a/x/1.jpg",
                          "members": [{"path": "/mnt/a/x/1.jpg"}, {"path": "/srv/b/1.jpg"},
                                      {"path": "/mnt/a/x/y/2.jpg"}]}]}  # fmt: skip
    text = quarantine_script(report, "q.py")
    plan = json.loads(base64.b64decode(text.split('PLAN = """')[1].split('"""')[0]))
    assert [base64.b64decode(r) for r in plan["roots"]] == [b"/mnt/a/x", b"/srv/b"]
    assert plan["tiers"] == ["exact", "near-identical"]
