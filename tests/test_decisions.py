"""`index decide`: keep / distinct decisions stored by content hash and honoured by dedup.

A small library of real photos (a cat, a byte copy of it, two edits of it and a bee) is built
with the tiny checkpoint; decisions go in through the CLI and must survive moves, renames and
rebuilds; the report, the quarantine script and the Duplicates page follow them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PHOTOS, TINY_BIRDER, Gallery
from PIL import Image
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from indexer.build import build
from indexer.cli import app as cli
from indexer.dedup import dedup
from indexer.settings import Settings

APP = str(Path(__file__).resolve().parents[1] / "search_ui" / "app.py")


@pytest.fixture
def lib(tmp_path, tiny_encoder):
    """(library folder, settings): a/cat.jpg = b/cat.jpg (bytes), a/cat-half, a/cat-q60, bee."""
    root = tmp_path / "lib"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    cat = PHOTOS / "flat" / "cat.jpg"
    shutil.copy(cat, root / "a" / "cat.jpg")
    shutil.copy(cat, root / "b" / "cat.jpg")
    img = Image.open(cat).convert("RGB")
    img.resize((img.width // 2, img.height // 2), Image.LANCZOS).save(
        root / "a" / "cat-half.jpg", quality=92
    )
    img.save(root / "a" / "cat-q60.jpg", quality=60)
    shutil.copy(PHOTOS / "flat" / "bee.jpg", root / "bee.jpg")
    settings = Settings.from_env(
        env={}, index=tmp_path / "index", weights=str(TINY_BIRDER), workers=1
    )
    build([root], settings, encoder=tiny_encoder)
    return root, settings


def decide(settings: Settings, *args: object):
    return CliRunner().invoke(cli, ["decide", *map(str, args), "--index", str(settings.index)])


def groups(settings: Settings, tier: str) -> list[dict]:
    return [g for g in dedup(settings.index).as_dict()["groups"] if g["tier"] == tier]


def paths(group: dict) -> set[str]:
    return {m["path"] for m in group["members"]}


def rebuild(root: Path, settings: Settings, encoder) -> None:
    build([root], settings, encoder=encoder)


def test_keep_changes_the_keeper_and_survives_a_move(lib, tiny_encoder):
    root, settings = lib
    (near,) = groups(settings, "near-identical")
    assert len(near["members"]) == 4 and "resolved" not in near
    edits = sorted(p for p in paths(near) if "cat-" in p and p != near["keep"])
    chosen = edits[0]  # an edit the keep rule did not choose
    done = decide(settings, "keep", chosen, "--note", "the one I like")
    assert done.exit_code == 0, done.output
    assert "keep" in done.output and chosen in done.output
    (near,) = groups(settings, "near-identical")
    assert near["keep"] == chosen
    assert near["reason"].startswith("your decision (index decide keep, 20")
    assert near["resolved"] is True and near["decision"] == "keep"
    (exact,) = groups(settings, "exact")
    assert "resolved" not in exact  # the decided picture is not in it
    html = dedup(settings.index).render("html")
    page = Gallery()  # the HTML report's data block: the group is marked resolved (keep)
    page.feed(html)
    marks = {row[0]: row[8] for row in page.data["groups"]}
    assert marks[near["id"]] == "keep" and marks[exact["id"]] is None
    assert "resolved: your decision (" in html  # what its page script shows for such a group
    shown = CliRunner().invoke(cli, ["dedup", "--index", str(settings.index)]).output
    assert "resolved (keep)" in shown and "your decision (index decide keep" in shown

    moved = root / "moved" / "renamed.jpg"
    moved.parent.mkdir()
    Path(chosen).rename(moved)
    rebuild(root, settings, tiny_encoder)
    (near,) = groups(settings, "near-identical")
    assert near["keep"] == str(moved) and near["decision"] == "keep"
    listed = json.loads(decide(settings, "list", "--json").output)
    assert [(d["kind"], d["note"]) for d in listed] == [("keep", "the one I like")]
    assert listed[0]["pictures"][0]["paths"] == [str(moved)]
    assert listed[0]["decided_paths"] == [chosen]


def test_distinct_splits_survives_a_rebuild_and_forget_restores(lib, tiny_encoder):
    root, settings = lib
    cat, half, q60 = (str(root / "a" / n) for n in ("cat.jpg", "cat-half.jpg", "cat-q60.jpg"))
    done = decide(settings, "distinct", cat, half)
    assert done.exit_code == 0 and "not duplicates of each other" in done.output, done.output
    for _ in range(2):  # before and after a rebuild that renames a member
        (near,) = groups(settings, "near-identical")
        assert not {cat, half} <= paths(near)  # never together, not even through cat-q60
        assert not {str(root / "b" / "cat.jpg"), half} <= paths(near)  # the copy is the cat
        assert near["resolved"] is True and near["decision"] == "distinct"
        Path(q60).rename(root / "b" / "q60-renamed.jpg")
        q60 = str(root / "b" / "q60-renamed.jpg")
        rebuild(root, settings, tiny_encoder)
    forgot = decide(settings, "forget", half)
    assert forgot.exit_code == 0 and "1 decisions forgotten" in forgot.output
    (near,) = groups(settings, "near-identical")
    assert len(near["members"]) == 4 and "resolved" not in near
    assert json.loads(decide(settings, "list", "--json").output) == []


def test_keep_all_removes_the_group(lib):
    root, settings = lib
    (near,) = groups(settings, "near-identical")
    assert decide(settings, "distinct", *sorted(paths(near))).exit_code == 0
    assert groups(settings, "near-identical") == []
    (exact,) = groups(settings, "exact")  # byte copies stay one picture: still an exact group
    assert decide(settings, "distinct", *sorted(paths(exact))).exit_code == 0
    assert groups(settings, "exact") == []  # copies only: keep all of them
    listed = decide(settings, "list")
    assert listed.exit_code == 0 and listed.output.count(" distinct ") == 2


def test_two_decided_keepers_in_one_group(lib):
    root, settings = lib
    half, q60 = str(root / "a" / "cat-half.jpg"), str(root / "a" / "cat-q60.jpg")
    assert decide(settings, "keep", half).exit_code == 0
    assert decide(settings, "keep", q60).exit_code == 0
    (near,) = groups(settings, "near-identical")
    assert near["keep"] in (half, q60)
    other = next(m for m in near["members"] if m["path"] in {half, q60} - {near["keep"]})
    assert other["protected"] is True  # the quarantine script never moves it


def test_quarantine_script_follows_a_keep_decision(lib, tmp_path):
    root, settings = lib
    (exact,) = groups(settings, "exact")
    chosen = next(p for p in paths(exact) if p != exact["keep"])  # the copy the rule moves
    assert decide(settings, "keep", chosen).exit_code == 0
    script = tmp_path / "q.py"
    made = CliRunner().invoke(
        cli, ["dedup", "--index", str(settings.index), "--quarantine-script", str(script)]
    )
    assert made.exit_code == 0, made.output
    dest = tmp_path / "quarantine"
    run = subprocess.run(
        [sys.executable, str(script), "--apply", "--tiers", "exact,near-identical", str(dest)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert Path(chosen).exists()  # the decided keeper stays
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg"))
    assert left == sorted(["bee.jpg", str(Path(chosen).relative_to(root))])


def test_bad_input_is_one_line_and_exit_1(lib, tmp_path):
    root, settings = lib
    stray = tmp_path / "not-indexed.jpg"
    shutil.copy(PHOTOS / "flat" / "cat.jpg", stray)
    for args in (
        ("keep", stray),
        ("distinct", root / "bee.jpg", stray),
        ("distinct", root / "bee.jpg"),
        ("distinct", root / "bee.jpg", root / "bee.jpg"),
        ("forget", stray),
    ):
        result = decide(settings, *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith("error: ") and result.output.count("\n") == 1, args
    assert "not in the index" in decide(settings, "keep", stray).output
    assert str(stray) in decide(settings, "keep", stray).output
    assert "at least two" in decide(settings, "distinct", root / "bee.jpg").output
    empty = CliRunner().invoke(cli, ["decide", "list", "--index", str(tmp_path / "none")])
    assert empty.exit_code == 1 and "no index at" in empty.output
    assert not (tmp_path / "none").exists()  # a decision never creates an index
    assert decide(settings, "list").output == "no decisions\n"


def test_hostile_names_print_escaped(lib, tiny_encoder):
    root, settings = lib
    evil = root / "\x1b]0;pwned\x07bee\n.jpg"
    (root / "bee.jpg").rename(evil)
    rebuild(root, settings, tiny_encoder)
    outputs = [decide(settings, "keep", evil), decide(settings, "list")]
    outputs.append(decide(settings, "forget", evil))
    for result in outputs:
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\\x1b]0;pwned\\x07bee\\n.jpg" in result.output
    listed = decide(settings, "list", "--json")
    assert listed.exit_code == 0 and json.loads(listed.output) == []


def content_ids(settings: Settings) -> dict[str, int]:
    from indexer.store.catalog import Catalog

    cat = Catalog(settings.index, readonly=True)
    try:
        return {r["path"]: int(r["content_id"]) for r in cat.records()}
    finally:
        cat.close()


def button(at: AppTest, prefix: str, path: str = ""):
    """The one button whose key starts with `prefix` (keys carry content ids, never positions)
    and whose help names `path`."""
    (found,) = [b for b in at.button if (b.key or "").startswith(prefix) and path in b.help]
    return found


def duplicates_page(settings: Settings, monkeypatch) -> AppTest:
    """The Duplicates page of the app on this index, drawn once."""
    for name, value in (("INDEX", settings.index), ("WEIGHTS", TINY_BIRDER), ("DEVICE", "cpu")):
        monkeypatch.setenv(f"PHOTO_INDEX_{name}", str(value))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/duplicates.py").run()
    assert not at.exception
    return at


def test_duplicates_page_actions(lib, monkeypatch):
    root, settings = lib
    at = duplicates_page(settings, monkeypatch)
    (near,) = groups(settings, "near-identical")
    other = next(
        m["path"] for m in near["members"] if "cat-" in m["path"] and m["path"] != near["keep"]
    )
    button(at, f"decide-keep-{content_ids(settings)[other]}-").click().run()
    assert not at.exception and not at.error
    name = Path(other).name
    assert [t.value for t in at.toast] == [f"Saved: keep · `{name}` (`index decide list`)"]
    (now,) = groups(settings, "near-identical")
    assert now["keep"] == other and now["decision"] == "keep"
    head = next(m.value for m in at.markdown if m.value.startswith("**near-identical group"))
    assert "resolved" in head and "your decision" in head
    alls = [b for b in at.button if (b.key or "").startswith("decide-all-")]
    near_all = alls[-1]  # the exact group's comes first (groups are listed by tier)
    near_all.click().run()
    assert not at.exception and groups(settings, "near-identical") == []
    assert not any(m.value.startswith("**near-identical group") for m in at.markdown)


def test_a_click_on_a_page_drawn_before_a_rebuild_saves_nothing(lib, monkeypatch, tiny_encoder):
    root, settings = lib
    at = duplicates_page(settings, monkeypatch)
    half = root / "a" / "cat-half.jpg"
    stale = button(at, f"decide-keep-{content_ids(settings)[str(half)]}-")
    shutil.copy(PHOTOS / "flat" / "cake.jpg", half)  # another picture under the same name
    rebuild(root, settings, tiny_encoder)
    stale.click().run()  # the page still shows the cat: the click must not keep the cake
    assert not at.exception
    assert any("changed since the page was drawn" in t.value for t in at.toast)
    assert json.loads(decide(settings, "list", "--json").output) == []


def test_a_click_after_groups_were_renumbered_keeps_the_file_clicked(
    lib, monkeypatch, tiny_encoder
):
    """Group numbers move when a decision (here: Keep all, from another tab) drops a group. A
    click on the page drawn before must still keep the file it was on, whatever the rerun that
    registered its button in between drew at that position."""
    root, settings = lib
    (root / "z").mkdir()
    shutil.copy(root / "bee.jpg", root / "z" / "bee.jpg")
    rebuild(root, settings, tiny_encoder)
    at = duplicates_page(settings, monkeypatch)
    heads = [m.value for m in at.markdown if m.value.startswith("**exact group")]
    assert "keep `cat.jpg`" in heads[0] and "keep `bee.jpg`" in heads[1]  # bee's is group 2
    clicked = str(root / "z" / "bee.jpg")
    key = button(at, f"decide-keep-{content_ids(settings)[clicked]}-", f"`{clicked}`").key
    decisions_made = decide(settings, "distinct", root / "a" / "cat.jpg", root / "b" / "cat.jpg")
    assert decisions_made.exit_code == 0  # the cat copies' group goes: bee's becomes group 1
    at.run()
    at.button(key=key).click().run()  # what the browser sends for the stale button: its key
    made = [d for d in json.loads(decide(settings, "list", "--json").output) if d["kind"] == "keep"]
    assert [d["decided_paths"] for d in made] == [[clicked]]


def test_decisions_survive_a_salvage(lib):
    from indexer.store.catalog import CATALOG_FILE, MIGRATIONS
    from indexer.store.salvage import salvage

    root, settings = lib
    assert decide(settings, "distinct", root / "bee.jpg", root / "a" / "cat.jpg").exit_code == 0
    before = json.loads(decide(settings, "list", "--json").output)
    kept = salvage(settings.index / CATALOG_FILE, MIGRATIONS)  # what `verify --repair` does
    assert kept["decisions"] == 1
    assert json.loads(decide(settings, "list", "--json").output) == before
