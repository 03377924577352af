"""The build plan without files or a catalog: moves, copies, edits, deletions, --reindex,
failed files left alone, which files are hashed ahead, and the mass-deletion hold."""

from __future__ import annotations

from indexer.build import plan
from indexer.build.vanished import MASS_MIN, VanishGuard
from indexer.files import FileEntry, ScanResult

ROOT = "/photos"


def f(name: str, size: int = 100, mtime: int = 1) -> FileEntry:
    return FileEntry(f"{ROOT}/{name}", size, mtime)


def row(name: str, cid: int, size: int = 100, mtime: int = 1, vector: bool = True):
    return plan.IndexedFile(f"{ROOT}/{name}", size, mtime, cid, f"h{cid}", vector)


def run_plan(
    images: list[FileEntry],
    rows: list[plan.IndexedFile],
    hashes: dict[str, str] | None = None,
    *,
    failed: plan.FailedKnown | None = None,
    retry_failed: bool = False,
    prune: bool = False,
    tombstone_sizes: frozenset[int] = frozenset(),
    scan: ScanResult | None = None,
) -> tuple[plan.Draft, plan.Plan, list[str]]:
    """Classify, 'hash' the files to hash from `hashes` (path → digest), resolve."""
    scan = scan or ScanResult(images=images)
    warnings: list[str] = []
    guard = VanishGuard([ROOT], prune, warnings)
    draft = plan.classify(
        scan,
        rows,
        failed or {},
        roots=[ROOT],
        tombstone_sizes=set(tombstone_sizes),
        retry_failed=retry_failed,
        guard=guard,
    )
    hashes = hashes or {}
    hashed = [(e, hashes[e.path]) for e in draft.to_hash]
    known = {r.hash: plan.KnownContent(r.content_id, r.has_vector) for r in rows}
    return draft, plan.resolve(draft, hashed, [], known, guard), warnings


def counts(p: plan.Plan) -> dict[str, int]:
    c = p.counts
    return dict(
        unchanged=c.unchanged, changed=c.changed, new=c.new, moved=c.moved, deleted=c.deleted
    )


def test_unchanged_files_need_nothing():
    draft, p, _ = run_plan([f("a.jpg"), f("b.jpg", 200)], [row("a.jpg", 1), row("b.jpg", 2, 200)])
    assert counts(p) == dict(unchanged=2, changed=0, new=0, moved=0, deleted=0)
    assert not draft.to_hash and not p.embed and not p.links and not p.deleted


def test_a_rename_is_a_move_linked_without_embedding():
    draft, p, _ = run_plan([f("new-name.jpg")], [row("a.jpg", 1)], {f"{ROOT}/new-name.jpg": "h1"})
    assert draft.to_hash == [f("new-name.jpg")]  # same size as an indexed file: hashed ahead
    assert counts(p)["moved"] == 1 and counts(p)["deleted"] == 0 and counts(p)["new"] == 0
    assert p.links == [(f("new-name.jpg"), 1)] and p.deleted == [f"{ROOT}/a.jpg"]
    assert not p.embed and 1 in p.orphans  # buried only if no path is left


def test_a_copy_links_to_the_known_content():
    _, p, _ = run_plan([f("a.jpg"), f("copy.jpg")], [row("a.jpg", 1)], {f"{ROOT}/copy.jpg": "h1"})
    assert counts(p) == dict(unchanged=1, changed=0, new=1, moved=0, deleted=0)
    assert p.links == [(f("copy.jpg"), 1)] and not p.embed


def test_an_edit_is_embedded_under_its_new_hash_and_the_old_content_may_be_buried():
    edited = f("a.jpg", 100, mtime=2)
    _, p, _ = run_plan([edited], [row("a.jpg", 1)], {edited.path: "h-new"})
    assert counts(p)["changed"] == 1
    assert p.embed == {plan.JobKey("h-new", edited.path): [edited]}


def test_an_edit_that_changes_the_size_is_read_once_by_the_decode_worker():
    edited = f("a.jpg", 555, mtime=2)
    draft, p, _ = run_plan([edited], [row("a.jpg", 1)])
    assert draft.one_read == [edited] and not draft.to_hash
    assert counts(p)["changed"] == 1
    (job,) = p.embed
    assert job.hash is None and job.key == edited.path


def test_sizes_decide_which_new_files_are_hashed_ahead():
    lone, twin_a, twin_b = f("lone.jpg", 1), f("t1.jpg", 2), f("t2.jpg", 2)
    like_indexed, like_tombstone = f("x.jpg", 100), f("y.jpg", 7)
    draft, p, _ = run_plan(
        [lone, twin_a, twin_b, like_indexed, like_tombstone],
        [row("old/z.jpg", 9, 100)],
        {twin_a.path: "ht", twin_b.path: "ht", like_indexed.path: "hx", like_tombstone.path: "hy"},
        tombstone_sizes=frozenset({7}),
    )
    assert draft.one_read == [lone]
    assert draft.to_hash == [twin_a, twin_b, like_indexed, like_tombstone]
    assert p.embed[plan.JobKey("ht", twin_a.path)] == [twin_a, twin_b]  # one content, two paths
    assert counts(p)["new"] == 5 and counts(p)["deleted"] == 1


def test_after_reindex_contents_without_vectors_are_embedded_again_not_duplicated():
    unchanged = f("a.jpg")
    copy = f("copy.jpg")
    _, p, _ = run_plan([unchanged, copy], [row("a.jpg", 1, vector=False)], {copy.path: "h1"})
    assert p.reembed == {"h1": 1}
    assert p.embed == {plan.JobKey("h1", unchanged.path): [unchanged, copy]}
    assert counts(p)["unchanged"] == 0 and counts(p)["new"] == 1


def test_a_failed_unchanged_file_is_not_tried_again_unless_asked():
    bad = f("bad.jpg", 3, 5)
    failed = {bad.path: (3, 5)}
    draft, p, _ = run_plan([bad], [], failed=failed)
    assert not p.embed and not draft.to_hash and not p.failures and not p.ledger_gone
    _, p, _ = run_plan([bad], [], failed=failed, retry_failed=True)
    assert list(p.embed.values()) == [[bad]]
    changed = f("bad.jpg", 4, 6)  # edited since: tried again
    _, p, _ = run_plan([changed], [], failed=failed)
    assert list(p.embed.values()) == [[changed]]


def test_scan_failures_are_ledgered_once_and_gone_ones_leave_the_ledger():
    empty = f("empty.jpg", 0, 1)
    scan = ScanResult(not_images=[(empty, "empty file")])
    failed = {empty.path: (0, 1), f"{ROOT}/deleted.jpg": (1, 1), "/elsewhere/x.jpg": (1, 1)}
    _, p, _ = run_plan([], [], failed=failed, scan=scan)
    assert p.failures == [] and p.ledger_gone == [f"{ROOT}/deleted.jpg"]
    _, p, _ = run_plan([], [], failed={}, scan=scan)
    assert p.failures == [plan.NewFailure(empty, "scan", "empty file")]


def test_files_under_a_folder_the_scan_could_not_see_stay():
    rows = [row("locked/a.jpg", 1), row("open/b.jpg", 2)]
    scan = ScanResult(unlisted=[(f"{ROOT}/locked", "permission denied")])
    failed = {f"{ROOT}/locked/c.jpg": (1, 1)}
    _, p, warnings = run_plan([], rows, failed=failed, scan=scan)
    assert p.deleted == [f"{ROOT}/open/b.jpg"] and p.ledger_gone == []
    assert len(warnings) == 1 and "locked" in warnings[0]


def test_a_mass_deletion_is_held_unless_pruned_but_moves_go_through():
    n = MASS_MIN * 2
    rows = [row(f"{i}.jpg", i, size=1000 + i) for i in range(n)]
    moved = f("moved/0.jpg", 1000)
    _, p, warnings = run_plan([moved], rows, {moved.path: "h0"})
    assert counts(p)["moved"] == 1 and p.deleted == [f"{ROOT}/0.jpg"]
    assert counts(p)["deleted"] == 0 and len(warnings) == 1 and "are gone at once" in warnings[0]
    _, p, warnings = run_plan([moved], rows, {moved.path: "h0"}, prune=True)
    assert counts(p)["deleted"] == n - 1 and len(p.deleted) == n and not warnings
