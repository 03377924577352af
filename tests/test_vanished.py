"""A drive that is not there never costs a re-embed: missing, empty and unreadable folders keep
their indexed files, mass deletions need --prune, and pictures gone from every path leave
tombstones that a restore relinks by content hash (issue 13, section 2)."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import CORPUS_CONTENTS, CORPUS_PICTURES, TINY_BIRDER, index_cli

from indexer.build import BuildError, build
from indexer.store.catalog import Catalog
from indexer.store.sync import index_path
from indexer.store.tombstones import gc
from indexer.store.vectors import load
from indexer.verify import stats, verify


def cli_build(root: Path, index: Path, *extra: str, preexec=None) -> tuple[int, dict, str]:
    proc = index_cli(
        "build", str(root), "--index", str(index), "--weights", str(TINY_BIRDER),
        "--workers", "1", "--json", *extra, preexec_fn=preexec,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: ")]


def faiss_matches_files(settings) -> None:
    """FAISS holds exactly the contents that have at least one path."""
    index, _ = load(index_path(settings.index))
    cat = Catalog(settings.index, readonly=True)
    with_paths = {r["content_id"] for r in cat.records()}
    cat.close()
    assert set(index.ids().tolist()) == with_paths


def test_missing_root_keeps_its_files_and_exits_3(tmp_path):
    """A root that is gone (unmounted disk) keeps every indexed file: one warning line with the
    count, exit code 3; when it is back nothing is embedded again."""
    root, index = tmp_path / "nas" / "photos", tmp_path / "index"
    shutil.copytree(Path(__file__).parent / "fixtures" / "photos" / "nested", root)
    rc, first, _ = cli_build(root, index)
    assert rc == 0 and first["embedded"] == first["vectors"] > 0
    root.parent.rename(tmp_path / "unmounted")
    rc, gone, err = cli_build(root, index)
    assert rc == 3
    line = f"{root}: not there (unmounted?); kept its {first['images']} indexed files"
    advice = "; run again when it is back, or pass --prune to remove them"
    assert warnings_in(err) == [f"warning: {line}{advice}"]
    assert gone["warnings"] == [warnings_in(err)[0].removeprefix("warning: ")]
    assert (gone["deleted"], gone["images"], gone["vectors"]) == (
        0,
        first["images"],
        first["vectors"],
    )
    (tmp_path / "unmounted").rename(root.parent)
    rc, back, err = cli_build(root, index)
    assert rc == 0 and back["warnings"] == [] and not warnings_in(err)
    assert (back["embedded"], back["new"], back["unchanged"]) == (0, 0, first["images"])


def test_ledger_entries_under_a_missing_root_stay(photos, settings, tiny_encoder, tmp_path):
    """A broken picture on a drive that is not there stays in the failure ledger (and is not
    retried when the drive is back, as it did not change)."""
    root = photos / "nested"
    (root / "broken.jpg").write_text("not a picture, named like one")
    first = build([root], settings, encoder=tiny_encoder)
    assert (first.failed, first.ledger) == (1, 1)
    root.rename(tmp_path / "away")
    gone = build([root], settings, encoder=tiny_encoder)
    assert gone.warnings and (gone.failed, gone.ledger) == (0, 1)
    (tmp_path / "away").rename(root)
    back = build([root], settings, encoder=tiny_encoder)
    assert (back.failed, back.ledger, back.embedded) == (0, 1, 0)


def test_a_typo_is_still_an_error(photos, settings, tiny_encoder, tmp_path):
    """A root that does not exist and has nothing indexed under it is refused (exit 1)."""
    build([photos / "nested"], settings, encoder=tiny_encoder)
    with pytest.raises(BuildError, match="no such file or folder"):
        build([photos / "nestde"], settings, encoder=tiny_encoder)
    proc = index_cli("build", str(photos / "nestde"), "--index", str(settings.index))
    assert proc.returncode == 1 and "nestde: no such file or folder" in proc.stderr


def test_empty_root_keeps_its_vectors_and_embeds_nothing_when_back(
    photos, settings, tiny_encoder, tmp_path
):
    """The issue's measurement: 24 vectors → 0 → 24 re-embedded becomes 24 kept, 0 embedded."""
    first = build([photos], settings, encoder=tiny_encoder)
    assert first.vectors == CORPUS_CONTENTS and first.images == CORPUS_PICTURES
    away = tmp_path / "away"
    away.mkdir()
    for child in list(photos.iterdir()):  # the mount point stays, empty
        shutil.move(child, away / child.name)
    empty = build([photos], settings, encoder=tiny_encoder)
    assert (empty.deleted, empty.images, empty.vectors) == (0, first.images, CORPUS_CONTENTS)
    assert empty.warnings == [
        f"{photos}: empty (unmounted?); kept its {first.images} indexed files; run again "
        "when it is back, or pass --prune to remove them"
    ]
    for child in list(away.iterdir()):
        shutil.move(child, photos / child.name)
    back = build([photos], settings, encoder=tiny_encoder)
    assert (back.embedded, back.deleted, back.vectors, back.warnings) == (0, 0, first.vectors, [])
    assert verify(settings)["problems"] == {}


def test_root_that_is_not_a_folder_keeps_its_files(photos, settings, tiny_encoder):
    root = photos / "nested"
    first = build([root], settings, encoder=tiny_encoder)
    shutil.move(root, photos / "elsewhere")
    root.write_bytes(b"a file where the folder was")
    again = build([root], settings, encoder=tiny_encoder)
    assert again.deleted == 0 and again.images == first.images
    assert again.warnings[0].startswith(f"{root}: not a folder; kept its {first.images} indexed")


def _drop_dac_capabilities() -> None:  # runs in the child, before exec
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH out of the bounding set
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "cannot drop capabilities")


def _unlistable_runner(folder: Path):
    """After chmod 000, how to run a process for which `folder` cannot be listed: directly
    (a normal user), or as root without the capabilities that bypass permissions."""
    try:
        os.listdir(folder)
    except PermissionError:
        return None
    probe = [sys.executable, "-c", "import os, sys; os.listdir(sys.argv[1])", str(folder)]
    try:
        denied = subprocess.run(probe, preexec_fn=_drop_dac_capabilities, capture_output=True)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot make a folder unlistable for root here: {exc}")
    if denied.returncode == 0:
        pytest.skip("cannot make a folder unlistable here (root keeps its capabilities)")
    return _drop_dac_capabilities


def test_unlistable_subfolder_keeps_its_files(photos, tmp_path):
    """A subfolder that cannot be listed (permissions) keeps its indexed files, says so in one
    line naming it, and exits 3; the rest of the root is indexed as usual."""
    root, index = photos / "nested", tmp_path / "index"
    rc, first, _ = cli_build(root, index)
    assert rc == 0
    cats = root / "cats"
    n_cats = len(list(cats.iterdir()))
    (root / "new.jpg").write_bytes((photos / "flat" / "tree.webp").read_bytes())
    cats.chmod(0)
    try:
        runner = _unlistable_runner(cats)
        rc, locked, err = cli_build(root, index, preexec=runner)
    finally:
        cats.chmod(0o755)
    assert rc == 3, err
    assert warnings_in(err) == [
        f"warning: {cats}: cannot list folder: Permission denied; kept its {n_cats} indexed "
        "files; run again once it can be read, or pass --prune to remove them"
    ]
    assert (locked["deleted"], locked["new"], locked["images"]) == (0, 1, first["images"] + 1)
    assert locked["embedded"] == 0  # new.jpg is a copy of a known picture
    rc, fine, err = cli_build(root, index)
    assert (rc, fine["deleted"], fine["unchanged"], fine["warnings"]) == (
        0,
        0,
        first["images"] + 1,
        [],
    )


def test_mass_deletion_needs_prune_then_a_restore_relinks(photos, settings, tiny_encoder, tmp_path):
    """More than half of a root gone at once is kept until --prune; pruned pictures stay as
    tombstones (out of FAISS and search), and putting the files back embeds nothing."""
    first = build([photos], settings, encoder=tiny_encoder)
    backup = tmp_path / "backup"
    shutil.copytree(photos / "flat", backup)
    for p in (photos / "flat").iterdir():
        p.unlink()
    cat = Catalog(settings.index, readonly=True)
    flat = sum(r["path"].startswith(f"{photos / 'flat'}/") for r in cat.records())
    cat.close()
    held = build([photos], settings, encoder=tiny_encoder)
    assert (held.deleted, held.images, held.vectors) == (0, first.images, first.vectors)
    assert len(held.warnings) == 1 and "indexed files are gone at once" in held.warnings[0]
    assert "run again with --prune" in held.warnings[0]

    pruned = build([photos], settings, encoder=tiny_encoder, prune=True)
    assert pruned.warnings == [] and pruned.deleted == flat == first.images - pruned.images
    gone = {str(photos / "flat" / p.name) for p in backup.iterdir()}
    cat = Catalog(settings.index, readonly=True)
    assert not gone & {r["path"] for r in cat.records()}
    cat.close()
    numbers = stats(settings)
    assert numbers["vectors"] == pruned.vectors < first.vectors
    assert numbers["tombstones"] == first.vectors - pruned.vectors > 0
    faiss_matches_files(settings)
    report = verify(settings)
    assert report["problems"] == {} and report["tombstones"] == numbers["tombstones"]
    assert any(f"{numbers['tombstones']} tombstones" in m for m in report["messages"])

    shutil.rmtree(photos / "flat")
    shutil.copytree(backup, photos / "flat")
    back = build([photos], settings, encoder=tiny_encoder)
    assert back.embedded == 0 and back.new == flat
    assert (back.images, back.vectors) == (first.images, first.vectors)
    assert stats(settings)["tombstones"] == 0
    faiss_matches_files(settings)
    assert verify(settings)["problems"] == {}


def test_moves_between_roots_relink_and_tombstones_expire(photos, settings, tiny_encoder):
    """A picture moved from one root to another (two builds) is relinked, not embedded again;
    tombstones older than the grace period go at the next build, `index gc` drops them now."""
    a, b = photos / "nested" / "cats", photos / "nested" / "misc"
    build([a], settings, encoder=tiny_encoder)
    build([b], settings, encoder=tiny_encoder)
    cat_jpg = (a / "cat.jpg").read_bytes()
    shutil.move(a / "cautious cat.jpg", b / "cautious cat.jpg")
    left = build([a], settings, encoder=tiny_encoder)
    assert left.deleted == 1 and stats(settings)["tombstones"] == 1
    arrived = build([b], settings, encoder=tiny_encoder)
    assert (arrived.new, arrived.embedded) == (1, 0)
    assert stats(settings)["tombstones"] == 0

    (b / "cautious cat.jpg").unlink()
    build([b], settings, encoder=tiny_encoder)
    build([b], settings, encoder=tiny_encoder)  # within the grace period: kept
    assert stats(settings)["tombstones"] == 1
    build([b], replace(settings, tombstone_days=0), encoder=tiny_encoder)
    assert stats(settings)["tombstones"] == 0

    (a / "cat.jpg").unlink()
    build([a], settings, encoder=tiny_encoder)
    assert stats(settings)["tombstones"] == 1
    proc = index_cli("gc", "--index", str(settings.index), "--json")
    assert proc.returncode == 0, proc.stderr
    dropped = json.loads(proc.stdout)
    assert dropped["dropped"] == 1 and dropped["bytes"] >= 2 * 32  # one 32-d float16 vector
    assert gc(settings) == {"dropped": 0, "bytes": 0}
    assert verify(settings)["problems"] == {} and verify(settings)["tombstones"] == 0
    (a / "cat.jpg").write_bytes(cat_jpg)  # after gc, a picture that comes back is embedded
    assert build([a], settings, encoder=tiny_encoder).embedded == 1


def test_more_than_1000_gone_needs_prune_even_in_a_big_root():
    """The guard's two thresholds on a catalog-sized example (no photos needed): 1,001 of 5,000
    files gone is held; 999 of 5,000 proceeds; 12 of 20 (over half) is held; 9 of 10 proceeds
    (fewer than 10 files always do)."""
    from indexer.build.vanished import VanishGuard

    def held(gone: int, total: int, prune: bool = False) -> tuple[int, list[str]]:
        indexed = [f"/big/{i:05d}.jpg" for i in range(total)]
        warnings: list[str] = []
        guard = VanishGuard(["/big"], prune, warnings)
        deleted = indexed[:gone]
        old_content = {p: i for i, p in enumerate(deleted)}
        kept = guard.hold_mass(deleted, old_content, dict.fromkeys(range(gone), 1), indexed)
        return gone - len(kept), warnings

    count, warnings = held(1001, 5000)
    assert count == 1001 and warnings == [
        "/big: 1001 of 5000 indexed files are gone at once; kept them in the index (a missing "
        "drive looks like this); if you deleted them, run again with --prune"
    ]
    assert held(999, 5000) == (0, [])
    assert held(12, 20)[0] == 12 and held(9, 10) == (0, [])
    assert held(1001, 5000, prune=True) == (0, [])


def test_catalog_of_the_previous_version_upgrades_and_relinks(photos, settings, tiny_encoder):
    """A catalog without tombstones (schema 1), holding a content no path uses (as a salvage
    or an older build could leave it): it upgrades, the content becomes a tombstone, and the
    file coming back is relinked without embedding."""
    import sqlite3

    from indexer.store.catalog import CATALOG_FILE

    root = photos / "nested"
    first = build([root], settings, encoder=tiny_encoder)
    lone = root / "misc" / "tree.webp"  # a picture with one path in this root
    db = sqlite3.connect(settings.index / CATALOG_FILE)
    with db:
        db.execute("DELETE FROM files WHERE path = ?", (str(lone),))
        db.execute("DROP INDEX ix_contents_orphaned_at")
        db.execute("ALTER TABLE contents DROP COLUMN orphaned_at")
        db.execute("DROP TABLE decisions")  # schema 3 (index decide) did not exist either
        db.execute("ALTER TABLE contents DROP COLUMN pixels_from")  # nor schema 4 (RAW pixels)
        db.execute("DROP INDEX ix_contents_unembedded")  # nor schema 6 (contents to re-embed)
        db.execute("PRAGMA user_version = 1")
    db.close()
    again = build([root], settings, encoder=tiny_encoder)
    assert (again.new, again.embedded, again.vectors) == (1, 0, first.vectors)
    with sqlite3.connect(settings.index / CATALOG_FILE) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 2
    faiss_matches_files(settings)
    assert verify(settings)["problems"] == {}


def test_folder_linked_from_an_unmounted_drive_keeps_its_files(photos, settings, tiny_encoder):
    """A symlink into a drive that is gone (Pictures/nas -> /mnt/nas/photos) dangles: the files
    indexed through it stay, with one line naming the link."""
    drive = photos.parent / "mnt-nas"
    shutil.move(photos / "nested" / "cats", drive)
    (photos / "nested" / "nas").symlink_to(drive, target_is_directory=True)
    first = build([photos / "nested"], settings, encoder=tiny_encoder)
    drive.rename(photos.parent / "unmounted")
    again = build([photos / "nested"], settings, encoder=tiny_encoder)
    link = photos / "nested" / "nas"
    assert (again.deleted, again.images, again.vectors) == (0, first.images, first.vectors)
    assert again.warnings == [
        f"{link}: cannot read: dangling symlink; kept its 5 indexed files; run again once it "
        "can be read, or pass --prune to remove them"
    ]
