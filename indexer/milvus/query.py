"""Search a synced collection: the query's filters become a Milvus filter expression built only
from validated values (a folder as its hex key, dates of digits and -:T, whole numbers), so no
user text ever reaches the expression; hits come back as catalog-like records, one per path.

Searches ask for Bounded consistency: a Strong search waits for the server's next time tick
(200 ms on a 2.3 server), and `index export` ends with a Strong read, after which every search
sees what it wrote.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from indexer.milvus import client as mc
from indexer.milvus import collection as mcol
from indexer.milvus.layout import Layout, probe, read
from indexer.milvus.sync import folder_key
from indexer.query import DATE

TOPK_MAX = 16_384  # the most neighbours one Milvus search returns


def expression(filters: Any, layout: Layout) -> str:
    """The Milvus filter for `filters` (a search.Filters): folder, date range, size range.

    It may let through more than the filters (a content with too many folders to key); the
    searcher applies the same filters to each path afterwards, as on the local index.
    """
    if filters is None:
        return ""
    parts: list[str] = []
    if filters.folder:
        root = os.path.abspath(filters.folder).rstrip(os.sep)
        if root:  # the root folder holds every path
            parts.append(layout.folder_match(folder_key(root)))
    if filters.date_from:
        parts.append(f'taken_at >= "{_date(filters.date_from, "from")}"')
    if filters.date_to:
        day = _date(filters.date_to, "to")  # taken_at[:len(day)] <= day; "" is no date
        parts.append(f'taken_at != "" and (taken_at < "{day}" or taken_at like "{day}%")')
    if filters.min_size is not None:
        parts.append(f"size >= {_whole(filters.min_size, 'min-size')}")
    if filters.max_size is not None:
        parts.append(f"size <= {_whole(filters.max_size, 'max-size')}")
    return " and ".join(parts)


def _date(value: str, name: str) -> str:
    if not DATE.fullmatch(str(value)):  # pasted into the expression: checked again
        raise mc.MilvusError(f"date {name} {value!r}: use YYYY, YYYY-MM or YYYY-MM-DD")
    return str(value)


def _whole(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise mc.MilvusError(f"{name} {value!r}: use a whole number of bytes")
    return int(value)


class MilvusIndex:
    """A collection opened for searching, checked against the index's encoder pin."""

    def __init__(self, uri: str, collection: str, meta: dict[str, Any]) -> None:
        pin, dim = mcol.pin_of(meta)
        self.uri, self.collection = uri, collection
        self.client = mc.connect(uri, collection)
        try:
            server = probe(self.client, uri)
            self.opened = mcol.open_collection(self.client, uri, collection, pin, dim, server)
        except BaseException:
            mc.close(self.client, uri)
            raise
        # the collection lags the catalog: a sync is running, was cut short, or is due
        props = self.opened.props
        generation = str(meta.get("generation", 0))
        self.lagging = props.get(mcol.GENERATION) != generation or not props.get(mcol.SYNCED)

    def close(self) -> None:
        mc.close(self.client, self.uri)

    def search(
        self, vector: np.ndarray, fetch: int, filters: Any
    ) -> tuple[list[tuple[float, int]], dict[int, list[dict[str, Any]]], bool]:
        """The `fetch` best contents: ((score, id) best first, records per id, exhausted?)."""
        fetch = min(fetch, TOPK_MAX)
        query = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
        with mc.failures(self.uri):
            result = self.client.search(
                self.collection,
                data=[query],
                limit=fetch,
                filter=expression(filters, self.opened.layout),
                output_fields=mcol.OUTPUT_FIELDS,
                search_params=self.opened.index.search_params(fetch),
                consistency_level="Bounded",
            )
        found: list[tuple[float, int]] = []
        records: dict[int, list[dict[str, Any]]] = {}
        for hit in result[0]:
            cid, entity = int(hit["id"]), hit["entity"]
            found.append((float(hit["distance"]), cid))
            records[cid] = [
                {
                    **{k: read(entity, k) for k in mcol.OUTPUT_FIELDS[1:]},
                    "path": p,
                    "content_id": cid,
                }
                for p in json.loads(entity["paths"])
            ]
        return found, records, len(found) < fetch or fetch == TOPK_MAX
