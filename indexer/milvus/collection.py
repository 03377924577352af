"""The collection: one entity per content id (= the FAISS id), pinned to the index's encoder.

A collection is pinned to the encoder (and so the dimension) of the index that made it: another
index's encoder is refused in one line, never mixed in. Its properties record the sync state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from indexer.milvus.client import PATHS_BYTES, MilvusError, failures, shown
from indexer.milvus.layout import (
    LONG,
    IndexPlan,
    Layout,
    Server,
    current_index,
)
from indexer.pins import IDENTITY_KEYS

# collection properties (strings): the encoder pin; the fingerprint of the catalog state the last
# complete sync sent ("" while a sync runs: a killed one leaves it empty, so the next one scans);
# the catalog generation that sync saw
PIN, SYNCED, GENERATION = "photo_index.encoder", "photo_index.synced", "photo_index.generation"
OUTPUT_FIELDS = ["paths", "size", "width", "height", "format", "taken_at", "camera"]


@dataclass(frozen=True)
class Opened:
    """A collection checked against the index: its sync state, layout and vector index."""

    props: dict[str, str]
    layout: Layout
    index: IndexPlan


def pin_of(meta: dict[str, Any]) -> tuple[str, int]:
    """The encoder pin (canonical JSON of its identity) and dimension of a catalog's meta."""
    identity = meta.get("encoder") or {}
    dim = int(meta.get("dim") or identity.get("dim") or 0)
    if not identity or not dim:
        raise MilvusError("the index has no vectors yet: run `index build PATH` first")
    return json.dumps({k: identity.get(k) for k in IDENTITY_KEYS}, sort_keys=True), dim


def _describe(pin: str) -> str:
    try:
        identity = json.loads(pin)
        sha = str(identity.get("weights_sha256") or "")[:12]
        return f"{identity.get('architecture')} (weights {sha}, dim {identity.get('dim')})"
    except (ValueError, AttributeError):
        return "an encoder photo-index does not know"


def open_collection(
    client: Any,
    uri: str,
    name: str,
    pin: str,
    dim: int,
    server: Server,
    create: IndexPlan | None = None,
) -> Opened:
    """The collection after checking its pin and dimension, loaded; when missing, created for
    `server` with the `create` index, or MilvusError when None. Another encoder's is refused."""
    with failures(uri):
        if not client.has_collection(name):
            if create is None:
                raise MilvusError(
                    f"no collection {name} at {shown(uri)}: run "
                    "`index export --format milvus --uri URI` first"
                )
            _create(client, name, dim, pin, Layout.for_server(server), create)
        info = client.describe_collection(name)
    props = dict(info.get("properties") or {})
    fields = {f["name"]: f for f in info.get("fields", [])}
    their_dim = int((fields.get("vector") or {}).get("params", {}).get("dim") or 0)
    if PIN not in props:
        raise MilvusError(
            f"collection {name} at {shown(uri)} was not made by photo-index: "
            "choose another --collection"
        )
    if props[PIN] != pin or their_dim != dim:
        raise MilvusError(
            f"collection {name} at {shown(uri)} holds vectors of another encoder: "
            f"{_describe(props[PIN])}, not this index's {_describe(pin)}; "
            "export to another --collection"
        )
    with failures(uri):
        client.load_collection(name, timeout=LONG)  # searches and queries need it in memory
    return Opened(props, Layout.of(info), current_index(client, uri, name))


def _create(client: Any, name: str, dim: int, pin: str, layout: Layout, index: IndexPlan) -> None:
    """The collection: id, vector (metric IP), digest, content hash, paths and filter fields."""
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("digest", DataType.VARCHAR, max_length=64)
    schema.add_field("hash", DataType.VARCHAR, max_length=256)
    schema.add_field("paths", DataType.VARCHAR, max_length=PATHS_BYTES)
    layout.add_fields(schema)
    params = client.prepare_index_params()
    index.add_to(params)
    client.create_collection(
        name,
        schema=schema,
        index_params=params,
        consistency_level="Strong",  # for any reader; our searches ask for less (query.py)
        properties={PIN: pin, SYNCED: "", GENERATION: ""},
    )


def set_properties(client: Any, uri: str, name: str, **values: str) -> None:
    """Record sync state on the collection itself (SYNCED, GENERATION)."""
    keys = {"synced": SYNCED, "generation": GENERATION}
    with failures(uri):
        client.alter_collection_properties(name, {keys[k]: v for k, v in values.items()})


def settled_count(client: Any, uri: str, name: str) -> int:
    """The entities in the collection, read at Strong consistency: it returns once the server
    has applied every write sent before it, so any search after it, at any level, sees them."""
    with failures(uri):
        rows = client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")
    return int(rows[0]["count(*)"])
