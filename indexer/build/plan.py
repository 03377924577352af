"""The build plan: which scanned files are unchanged, link to known content, need embedding,
or are gone, decided without touching a file or the catalog.

Two pure steps around the build's one I/O step: `classify` sorts the scan against the catalog
rows and names the files to hash ahead; the build hashes them and looks their contents up;
`resolve` turns that into the `Plan` that `CatalogWrites.apply` writes in one transaction.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from indexer.files import FileEntry, ScanResult, inside_roots

if TYPE_CHECKING:
    from indexer.build.vanished import VanishGuard

# path → (size, mtime_ns) of the file when it was ledgered
FailedKnown = dict[str, tuple[int | None, int | None]]


@dataclass(frozen=True, slots=True)
class IndexedFile:
    """One catalog file with its content: what a scanned file of that path is compared to
    (slotted: a rescan holds one per indexed file). `hash` is needed, and read, only for a
    content without a vector (it is embedded again under that hash)."""

    path: str
    size: int
    mtime_ns: int
    content_id: int
    hash: str | None
    has_vector: bool


@dataclass(frozen=True)
class KnownContent:
    """A catalog content found by the hash of a scanned file."""

    id: int
    has_vector: bool


@dataclass(frozen=True)
class JobKey:
    """One content to embed: hashed ahead (`hash`), or hashed by the decode worker from the
    bytes it decodes (`hash` None: a new file read once). `path` is the file it reads."""

    hash: str | None
    path: str

    @property
    def key(self) -> str:
        """The pipeline's handle: the hash, or the path when the worker hashes it."""
        return self.path if self.hash is None else self.hash


@dataclass(frozen=True)
class NewFailure:
    """A file this run tried and could not index: one more failure-ledger entry."""

    entry: FileEntry
    stage: str
    reason: str


@dataclass
class Counts:
    """The build summary's file counts (`index build --json` keys)."""

    unchanged: int = 0
    changed: int = 0
    new: int = 0
    moved: int = 0
    deleted: int = 0


@dataclass
class Draft:
    """`classify`'s answer: what is settled, and which files to hash before `resolve`."""

    indexed: dict[str, IndexedFile]  # catalog files under the roots, by path
    to_hash: list[FileEntry]  # new or changed files that may be a copy or a move
    one_read: list[FileEntry]  # new or changed files of a size nothing else has
    reembed: dict[str, list[FileEntry]]  # hash → unchanged files whose content lost its vector
    deleted: list[str]  # indexed paths the scan did not find (less those under unseen folders)
    failures: list[NewFailure]  # scan failures not already in the ledger unchanged
    ledger_gone: list[str]  # ledger entries of files gone from the folders the scan saw
    unchanged: int = 0


@dataclass
class Plan:
    """What one build writes before embedding, and what it embeds."""

    counts: Counts
    links: list[tuple[FileEntry, int]]  # paths pointed at known content (no embedding)
    embed: dict[JobKey, list[FileEntry]]  # contents to embed → the files that have them
    reembed: dict[str, int]  # hash → id of a known content that lost its vector
    deleted: list[str]  # indexed paths to remove
    orphans: set[int]  # contents that lose a path: buried when none is left
    failures: list[NewFailure] = field(default_factory=list)
    ledger_gone: list[str] = field(default_factory=list)


def classify(
    scan: ScanResult,
    rows: Iterable[IndexedFile],
    failed_known: FailedKnown,
    *,
    roots: list[str],
    tombstone_sizes: set[int],
    retry_failed: bool,
    guard: VanishGuard,
) -> Draft:
    """Sort the scanned files against the catalog `rows` (all of them) and the ledger.

    A file whose size no indexed file (tombstones included) and no other new file has cannot
    be a copy or a move: it goes to `one_read` (the decode worker hashes it), the rest to
    `to_hash`. An unchanged file that failed before is not tried again unless `retry_failed`.
    """
    indexed: dict[str, IndexedFile] = {}
    taken = set(tombstone_sizes)  # sizes of indexed files: a new file of one may be a copy
    inside = inside_roots(roots)
    for r in rows:  # one pass, no list of every row
        taken.add(r.size)
        if inside(r.path):
            indexed[r.path] = r
    draft = Draft(indexed, [], [], defaultdict(list), [], [], [])
    candidates: list[FileEntry] = []
    for entry in scan.images:
        row = indexed.get(entry.path)
        if row is not None and (row.size, row.mtime_ns) == (entry.size, entry.mtime_ns):
            if row.has_vector:
                draft.unchanged += 1
            else:
                draft.reembed[row.hash].append(entry)
        elif retry_failed or failed_known.get(entry.path) != (entry.size, entry.mtime_ns):
            candidates.append(entry)  # (failed before, unchanged: stays in the ledger)
    scanned = {e.path for e in scan.images}
    draft.deleted = guard.hold_unseen(scan, [p for p in indexed if p not in scanned])
    not_read = [*scan.not_images, *((FileEntry(p, 0, 0), why) for p, why in scan.errors)]
    for entry, reason in not_read:
        if retry_failed or failed_known.get(entry.path) != (entry.size, entry.mtime_ns):
            draft.failures.append(NewFailure(entry, "scan", reason))
    seen = scanned | {e.path for e, _ in not_read}
    gone = [p for p in failed_known if p not in seen and inside(p)]
    draft.ledger_gone = guard.seen_gone(scan, gone)  # not those behind an unseen folder
    sizes = Counter(e.size for e in candidates)  # (taken: a tombstone may come back too)
    for entry in candidates:
        alone = sizes[entry.size] == 1 and entry.size not in taken
        (draft.one_read if alone else draft.to_hash).append(entry)
    return draft


def resolve(
    draft: Draft,
    hashed: list[tuple[FileEntry, str]],
    unread: list[NewFailure],
    known: dict[str, KnownContent],
    guard: VanishGuard,
) -> Plan:
    """The plan from the draft, the hashes of its `to_hash` files (`unread`: those that could
    not be read) and the catalog contents with those hashes (`known`)."""
    counts = Counts(unchanged=draft.unchanged)
    indexed = draft.indexed
    old_content = {p: indexed[p].content_id for p in draft.deleted}
    gone_by_content: dict[int, int] = Counter(old_content.values())
    reembed = {h: indexed[files[0].path].content_id for h, files in draft.reembed.items()}
    reembed_files = {h: list(files) for h, files in draft.reembed.items()}
    new_by_hash: dict[str, list[FileEntry]] = defaultdict(list)
    links: list[tuple[FileEntry, int]] = []
    for entry in draft.one_read:
        counts.changed += entry.path in indexed
        counts.new += entry.path not in indexed
    for entry, digest in hashed:
        content = known.get(digest)
        if content is not None and content.has_vector:
            links.append((entry, content.id))
            if entry.path not in indexed and gone_by_content[content.id] > 0:
                gone_by_content[content.id] -= 1
                counts.moved += 1
                continue
        elif content is not None:  # known content without its vector (after --reindex)
            reembed[digest] = content.id
            reembed_files.setdefault(digest, []).append(entry)
        else:
            new_by_hash[digest].append(entry)
        counts.changed += entry.path in indexed
        counts.new += entry.path not in indexed
    deleted = guard.hold_mass(draft.deleted, old_content, gone_by_content, indexed)
    counts.deleted = len(deleted) - counts.moved
    orphans = set(old_content.values())  # a changed path linked elsewhere may orphan its old
    orphans.update(indexed[e.path].content_id for e, _ in links if e.path in indexed)
    embed = {JobKey(None, e.path): [e] for e in draft.one_read}
    embed.update((JobKey(h, files[0].path), files) for h, files in new_by_hash.items())
    embed.update((JobKey(h, files[0].path), files) for h, files in reembed_files.items())
    return Plan(
        counts, links, embed, reembed, deleted, orphans, [*draft.failures, *unread],
        draft.ledger_gone,
    )  # fmt: skip
