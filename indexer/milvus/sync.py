"""`index export --format milvus`: bring a Milvus collection to the catalog's state, incrementally.

Each entity carries a digest of what it says (content hash, embedding time, paths, metadata).
A sync compares the catalog's digests with the collection's and sends only new and changed
contents, deletes the ones gone: a re-run after a kill at any point sends what is still
missing (upserts are idempotent). The fingerprint of the whole state is recorded on the
collection only once it is complete, so an unchanged catalog costs no scan at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from indexer.milvus import client as mc
from indexer.milvus import collection as mcol
from indexer.milvus.layout import LONG, IndexPlan, Layout, ensure_index, plan_index, probe
from indexer.store.catalog import Catalog, Content, chunked, has_file
from indexer.store.vectors import FLAT_MAX

BATCH = 1000  # entities per upsert (~3 MB of 768-d vectors per call)
Progress = Callable[[int, int], None]  # (entities sent so far, entities to send)


@dataclass
class Entry:
    """What the collection should hold for one content (everything but its vector)."""

    id: int
    hash: str
    embedded_at: float | None
    meta: dict[str, Any]
    paths: list[str] = field(default_factory=list)

    @property
    def digest(self) -> str:
        doc = [self.hash, self.embedded_at, sorted(self.paths), self.meta]
        text = json.dumps(doc, sort_keys=True, ensure_ascii=True)
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    def entity(self, vector: Any, layout: Layout) -> dict[str, Any]:
        """The Milvus row: the vector, its digest, paths (JSON, lossless for any byte), filters."""
        paths = sorted(self.paths)
        text = json.dumps(paths, ensure_ascii=True)
        while len(text) > mc.PATHS_BYTES and len(paths) > 1:  # hundreds of copies: keep most
            paths = paths[: len(paths) // 2]
            text = json.dumps(paths, ensure_ascii=True)
        return {
            "id": self.id,
            "vector": vector,
            "digest": self.digest,
            "hash": self.hash,
            "paths": text,
            **layout.values({k: _utf8(v) for k, v in self.meta.items()}, folder_keys(self.paths)),
        }


def folder_key(folder: str) -> str:
    """A folder as a fixed-size hex key: any byte in a name, and nothing to escape in a filter."""
    return hashlib.blake2b(os.fsencode(folder), digest_size=16).hexdigest()


def folder_keys(paths: Sequence[str]) -> list[str] | None:
    """Keys of every folder above each path (but /), sorted: `folder=X` then matches the key
    (hex: nothing to escape); None when there are too many to keep."""
    keys: set[str] = set()
    for path in paths:
        parent = os.path.dirname(path)
        while parent and parent != os.path.dirname(parent):
            keys.add(folder_key(parent))
            parent = os.path.dirname(parent)
    return sorted(keys) if len(keys) <= mc.FOLDER_KEYS else None


def _utf8(value: Any) -> Any:
    """A string Milvus can store (valid UTF-8: stray bytes as \\xNN), anything else as it is."""
    if isinstance(value, str):
        return os.fsencode(value).decode("utf-8", "backslashreplace")
    return value


def local_entries(cat: Catalog) -> dict[int, Entry]:
    """Every content with a vector and a path, with its paths and filter metadata."""
    entries: dict[int, Entry] = {}
    with cat.session() as s:
        rows = s.execute(
            select(
                Content.id, Content.hash, Content.embedded_at, Content.size, Content.width,
                Content.height, Content.format, Content.taken_at, Content.camera,
            ).where(Content.vector.is_not(None), has_file())
        )  # fmt: skip
        for cid, digest, at, size, width, height, fmt, taken, camera in rows:
            meta = {"size": size or 0, "width": width, "height": height, "format": fmt}
            meta.update(taken_at=taken, camera=camera)
            entries[cid] = Entry(cid, digest, at, meta)
    for rec in cat.records():
        entry = entries.get(rec["content_id"])
        if entry is not None:
            entry.paths.append(rec["path"])
    return entries


def fingerprint(entries: dict[int, Entry], pin: str) -> str:
    """One hash of the whole state the collection should hold (encoder pin included)."""
    h = hashlib.blake2b(pin.encode(), digest_size=16)
    for cid in sorted(entries):
        h.update(f"{cid}:{entries[cid].digest}\n".encode())
    return h.hexdigest()


def remote_digests(client: Any, uri: str, name: str) -> dict[int, str]:
    """Every entity's id and digest, read in batches."""
    out: dict[int, str] = {}
    with mc.failures(uri):
        it = client.query_iterator(name, batch_size=BATCH * 4, filter="", output_fields=["digest"])
        try:
            while batch := it.next():
                out.update((int(r["id"]), str(r["digest"])) for r in batch)
        finally:
            it.close()
    return out


def export_milvus(
    index_dir: str | Path,
    uri: str,
    collection: str = mc.DEFAULT_COLLECTION,
    *,
    batch: int = BATCH,
    progress: Progress | None = None,
    flat_max: int = FLAT_MAX,
) -> dict[str, Any]:
    """Sync the catalog to `collection` at `uri`: create it, or send only what changed.

    Returns counts (entities, upserted, deleted, unchanged), the catalog generation, the server
    and the collection's vector index (exact below `flat_max` entities), seconds.
    """
    started = time.perf_counter()
    mc.check_target(uri, collection)
    cat = Catalog(index_dir, readonly=True)
    try:
        generation = cat.generation()
        pin, dim = mcol.pin_of(cat.all_meta())
        entries = local_entries(cat)
        target = fingerprint(entries, pin)
        client = mc.connect(uri, collection)
        try:
            server = probe(client, uri)
            plan = plan_index(server, len(entries), flat_max)
            opened = mcol.open_collection(client, uri, collection, pin, dim, server, plan)
            if opened.props.get(mcol.SYNCED) == target:
                sent, gone = [], []
                ensure_index(client, uri, collection, opened.index, plan)
                if opened.props.get(mcol.GENERATION) != str(generation):  # a no-change build
                    mcol.set_properties(client, uri, collection, generation=str(generation))
            else:
                sent, gone, missing = _send(cat, client, uri, collection, entries, opened, batch,
                                            progress)  # fmt: skip
                count = _settle(client, uri, collection, opened, plan, bool(sent))
                complete = cat.generation() == generation and not missing
                mcol.set_properties(
                    client, uri, collection, generation=str(generation),
                    synced=target if complete and count == len(entries) else "",
                )  # fmt: skip
        finally:
            mc.close(client, uri)
    finally:
        cat.close()
    return {
        "uri": mc.shown(uri),
        "collection": collection,
        "entities": len(entries),
        "upserted": len(sent),
        "deleted": len(gone),
        "unchanged": len(entries) - len(sent),
        "generation": generation,
        "server": server.label,
        "index": plan.kind,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _settle(
    client: Any, uri: str, name: str, opened: mcol.Opened, plan: IndexPlan, sent: bool
) -> int:
    """After the writes: seal them when the index is not exact (a server builds HNSW on sealed
    segments only), rebuild the index if the plan changed, then count the entities at Strong
    consistency, so every later search, from any process and at any level, sees the writes."""
    if sent and plan.kind != "FLAT":
        with mc.failures(uri):
            client.flush(name, timeout=LONG)
    ensure_index(client, uri, name, opened.index, plan)
    return mcol.settled_count(client, uri, name)


def _send(
    cat: Catalog,
    client: Any,
    uri: str,
    name: str,
    entries: dict[int, Entry],
    opened: mcol.Opened,
    batch: int,
    progress: Progress | None,
) -> tuple[list[int], list[int], int]:
    """Mark the collection as syncing, diff digests, delete what is gone, upsert what changed;
    returns (upserted, deleted, how many vectors vanished from the catalog meanwhile)."""
    mcol.set_properties(client, uri, name, synced="")  # a kill from here on leaves it unsynced
    remote = remote_digests(client, uri, name)
    send = sorted(cid for cid, e in entries.items() if remote.get(cid) != e.digest)
    gone = sorted(set(remote) - set(entries))
    total, done = len(send) + len(gone), 0
    missing = 0
    with mc.failures(uri):
        for chunk in chunked(gone, batch):
            client.delete(name, ids=list(chunk))
            done += len(chunk)
            if progress:
                progress(done, total)
        for chunk in chunked(send, batch):
            ids, vectors = cat.vectors_for(chunk)
            pairs = zip(ids.tolist(), vectors, strict=True)
            rows = [entries[int(cid)].entity(v, opened.layout) for cid, v in pairs]
            if rows:
                client.upsert(name, rows)
            missing += len(chunk) - len(rows)
            done += len(chunk)
            if progress:
                progress(done, total)
    return send, gone, missing
