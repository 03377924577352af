"""What a Milvus deployment supports, and the collection layout and vector index that fit it.

A collection is made for its server: fields may be null from Milvus 2.5 on (and on Lite); before,
an absent value is stored as a sentinel (-1, ""). Folder keys are one VARCHAR matched by an infix
LIKE on Lite (fast there) and an ARRAY matched by array_contains on a server (2.3 matches only
prefixes). An existing collection is read as its own schema says, whoever made it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from indexer.milvus.client import FOLDER_KEYS, MilvusError, failures, is_server, shown
from indexer.store.vectors import FLAT_MAX

MIN_VERSION = (2, 3)  # upsert, ARRAY fields, count(*): what a sync needs
NULLABLE_FROM = (2, 5)
HNSW = {"M": 16, "efConstruction": 200}
EF_MIN = 128  # HNSW search breadth, raised to the neighbours asked for (64: recall@10 0.90-0.99)
LONG = 3600.0  # seconds for building or loading an index on a big collection
NO_NUMBER, NO_TEXT = -1, ""  # an absent value where fields cannot be null
NUMBERS, TEXTS = ("width", "height"), (("format", 64), ("taken_at", 64), ("camera", 1024))
KEY_CHARS = 32  # a folder key: 16 bytes in hex


@dataclass(frozen=True)
class Server:
    """Where the collection lives: Milvus Lite, or a server and the version it reports."""

    lite: bool
    version: tuple[int, int] | None  # None: a service that does not say
    label: str  # as it names itself ("v2.3.5", "milvus_lite-3.2.2")

    @property
    def managed(self) -> bool:
        """A managed service (Zilliz Cloud): it picks the index itself (AUTOINDEX only)."""
        return "zilliz" in self.label.lower()


def server_of(label: str, uri: str) -> Server:
    """The Server that `get_server_version` described; MilvusError naming what a server older
    than 2.3 lacks."""
    lite = not is_server(uri)
    found = re.search(r"(\d+)\.(\d+)", label)
    version = (int(found[1]), int(found[2])) if found and not lite else None
    if version is not None and version < MIN_VERSION:
        raise MilvusError(
            f"Milvus {label} at {shown(uri)} is too old: photo-index needs a server from 2.3 on "
            "(upsert, ARRAY fields, count(*)); upgrade it or export to another"
        )
    return Server(lite, version, label)


def probe(client: Any, uri: str) -> Server:
    """Ask the server what it is (one call)."""
    with failures(uri):
        return server_of(str(client.get_server_version()), uri)


@dataclass(frozen=True)
class Layout:
    """How a collection stores what may be absent and the keys of a content's folders."""

    nullable: bool  # absent metadata as null, else as NO_NUMBER / NO_TEXT
    folder_array: bool  # folder keys as ARRAY<VARCHAR>, else one " k1 k2 … " VARCHAR

    @classmethod
    def for_server(cls, server: Server) -> Layout:
        """The layout a new collection gets on `server`."""
        new = server.version is None or server.version >= NULLABLE_FROM
        return cls(nullable=server.lite or new, folder_array=not server.lite)

    @classmethod
    def of(cls, info: dict[str, Any]) -> Layout:
        """The layout of an existing collection, from `describe_collection`."""
        from pymilvus import DataType

        fields = {f["name"]: f for f in info.get("fields", [])}
        nullable = bool((fields.get("taken_at") or {}).get("nullable"))
        return cls(nullable, (fields.get("folders") or {}).get("type") == DataType.ARRAY)

    def add_fields(self, schema: Any) -> None:
        """The filter fields after id, vector, digest, hash and paths."""
        from pymilvus import DataType

        if self.folder_array:
            schema.add_field(
                "folders", DataType.ARRAY, element_type=DataType.VARCHAR,
                max_capacity=FOLDER_KEYS, max_length=KEY_CHARS,
            )  # fmt: skip
        else:
            schema.add_field("folders", DataType.VARCHAR, max_length=65_535)
        schema.add_field("size", DataType.INT64)
        null = {"nullable": True} if self.nullable else {}
        for name in NUMBERS:
            schema.add_field(name, DataType.INT64, **null)
        for name, length in TEXTS:
            schema.add_field(name, DataType.VARCHAR, max_length=length, **null)

    def values(self, meta: dict[str, Any], keys: list[str] | None) -> dict[str, Any]:
        """The row's filter fields: `meta` (None where absent) and the folder keys (None: more
        than fit, stored as "*", which every folder filter lets through)."""
        keys = keys if keys is not None else ["*"]
        row = {"folders": keys if self.folder_array else f" {' '.join(keys)} ", **meta}
        if not self.nullable:
            for name in NUMBERS:
                row[name] = NO_NUMBER if row[name] is None else row[name]
            for name, _ in TEXTS:
                row[name] = NO_TEXT if row[name] is None else row[name]
        return row

    def folder_match(self, key: str) -> str:
        """The filter expression for "a folder with this key is above one of the paths"."""
        if self.folder_array:
            return f'(array_contains(folders, "{key}") or array_contains(folders, "*"))'
        return f'(folders like "% {key} %" or folders == " * ")'


def read(entity: dict[str, Any], name: str) -> Any:
    """A metadata field of a search hit, None where absent (null or a sentinel)."""
    value = entity.get(name)
    return None if value in (NO_NUMBER, NO_TEXT) and name != "size" else value


@dataclass(frozen=True)
class IndexPlan:
    """The vector index of a collection and how to search it."""

    kind: str  # FLAT, HNSW, AUTOINDEX (what the server reports)
    params: dict[str, Any] = field(default_factory=dict)

    def add_to(self, index_params: Any) -> None:
        index_params.add_index("vector", index_type=self.kind, metric_type="IP", params=self.params)

    def search_params(self, limit: int) -> dict[str, Any]:
        breadth = {"ef": max(EF_MIN, limit)} if self.kind == "HNSW" else {}
        return {"metric_type": "IP", "params": breadth}


def plan_index(server: Server, entities: int, flat_max: int = FLAT_MAX) -> IndexPlan:
    """Exact (FLAT) below `flat_max` entities, as the local index; HNSW above on a server.
    Milvus Lite stays FLAT (its HNSW drops matches under a narrow filter); a managed service
    gets AUTOINDEX, the one index it takes."""
    if server.managed:
        return IndexPlan("AUTOINDEX")
    if server.lite or entities < flat_max:
        return IndexPlan("FLAT")
    return IndexPlan("HNSW", dict(HNSW))


def current_index(client: Any, uri: str, name: str) -> IndexPlan:
    """The collection's vector index as the server describes it."""
    with failures(uri):
        info = client.describe_index(name, "vector")
    params = {k: int(info[k]) for k in HNSW if k in info}
    return IndexPlan(str(info.get("index_type", "")), params)


def ensure_index(client: Any, uri: str, name: str, have: IndexPlan, want: IndexPlan) -> bool:
    """Rebuild the vector index when the plan changed (the collection grew past FLAT); load it.
    Searches wait while it builds. True when it was rebuilt."""
    if have.kind == want.kind:
        return False
    with failures(uri):
        client.release_collection(name, timeout=LONG)
        client.drop_index(name, "vector", timeout=LONG)
        index = client.prepare_index_params()
        want.add_to(index)
        client.create_index(name, index, timeout=LONG)
        client.load_collection(name, timeout=LONG)
    return True
