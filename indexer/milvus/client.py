"""Connecting to Milvus and the collection's layout: one entity per content id (= the FAISS id).

The URI is a Milvus Lite file (`./photos.milvus.db`, an embedded Milvus) or a server
(`http://host:19530`); the token comes only from the MILVUS_TOKEN variable and is scrubbed from
every message. A collection is pinned to the encoder (and so the dimension) of the index that
made it: another index's encoder is refused in one line, never mixed in.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from indexer.errors import SearchError, UserError
from indexer.pins import IDENTITY_KEYS
from indexer.text import printable

TOKEN_ENV = "MILVUS_TOKEN"
DEFAULT_COLLECTION = "photos"
TIMEOUT = 30.0  # seconds per call to a server
# collection properties (strings): the encoder pin; the fingerprint of the catalog state the last
# complete sync sent ("" while a sync runs: a killed one leaves it empty, so the next one scans);
# the catalog generation that sync saw
PIN, SYNCED, GENERATION = "photo_index.encoder", "photo_index.synced", "photo_index.generation"
PATHS_BYTES = 65_535  # Milvus's longest VARCHAR: the JSON list of a content's paths
# the keys of a content's folders, " k1 k2 … " (matched with LIKE, which Milvus Lite evaluates
# fast, unlike ARRAY_CONTAINS); a content with more ancestor folders than fit gets " * "
FOLDER_KEYS = PATHS_BYTES // 33 - 1
OUTPUT_FIELDS = ["paths", "size", "width", "height", "format", "taken_at", "camera"]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_SERVER = re.compile(r"(https?|tcp|grpcs?)://", re.IGNORECASE)


class MilvusError(SearchError):
    """Milvus cannot be reached or used: pymilvus missing, bad URI, a refused collection."""


def check_target(uri: str, collection: str) -> None:
    """MilvusError for a URI that is neither a server nor a `.db` Lite file, or a bad name."""
    if not _NAME.fullmatch(collection):
        raise MilvusError(
            f"--collection {printable(collection)!r}: use letters, digits and _ (not first a digit)"
        )
    if _SERVER.match(uri):
        return
    if not uri.endswith(".db"):
        raise MilvusError(
            f"--milvus/--uri {printable(uri)}: give a Milvus Lite file ending in .db "
            "(./photos.milvus.db) or a server (http://host:19530)"
        )
    parent = Path(uri).expanduser().absolute().parent
    if not parent.is_dir():
        raise MilvusError(f"{printable(uri)}: no folder {printable(parent)} for this Lite file")


def shown(uri: str) -> str:
    """The URI as it may be printed: a password inside it (user:pass@) is masked."""
    if _SERVER.match(uri):
        parts = urlsplit(uri)
        if parts.password:
            uri = uri.replace(f":{parts.password}@", ":***@", 1)
    return printable(uri)


def _scrub(text: str) -> str:
    """One line of `text` with the token (and a URI's password) masked."""
    token = os.environ.get(TOKEN_ENV, "")
    line = " ".join(str(text).split())
    for secret in {token, *token.split(":")} - {""}:
        line = line.replace(secret, "***")
    return printable(line)


@contextmanager
def failures(uri: str) -> Iterator[None]:
    """Turn pymilvus's and gRPC's errors into one MilvusError line naming the URI, no secret."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise MilvusError(f"Milvus at {shown(uri)}: {_scrub(exc.message)}") from None
    except (OSError, RuntimeError, ValueError) as exc:
        if isinstance(exc, UserError):
            raise
        raise MilvusError(f"Milvus at {shown(uri)}: {_scrub(str(exc))}") from None


def connect(uri: str, collection: str) -> Any:
    """A MilvusClient on `uri` (token from MILVUS_TOKEN); the caller closes it."""
    check_target(uri, collection)
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise MilvusError(
            "Milvus needs pymilvus and milvus-lite: pip install 'photo-index[milvus]'"
        ) from None
    # pymilvus logs failed calls with their arguments; we say what failed in one line instead
    for name in ("pymilvus", "milvus_lite"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if _SERVER.match(uri):
        with failures(uri):
            return MilvusClient(uri=uri, token=os.environ.get(TOKEN_ENV, ""), timeout=TIMEOUT)
    try:
        with failures(uri):
            return MilvusClient(uri=str(Path(uri).expanduser().absolute()), timeout=TIMEOUT)
    except MilvusError as exc:  # Milvus Lite: one process at a time holds the file
        raise MilvusError(
            f"{exc}: is another process using it? A Milvus Lite file serves one process at a "
            "time; use a Milvus server to share a collection"
        ) from None


def close(client: Any, uri: str) -> None:
    """Close the client; for a Milvus Lite file also stop its in-process server, which holds the
    file's lock until then (so another process, say an export, can open it)."""
    client.close()
    if _SERVER.match(uri):
        return
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:  # another milvus-lite: it lets go at exit
        return
    server_manager_instance.release_server(str(Path(uri).expanduser().absolute()))


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


def open_collection(client: Any, uri: str, name: str, pin: str, dim: int, create: bool) -> dict:
    """The collection's properties after checking its pin and dimension; created when missing
    and `create`, else MilvusError. Another encoder's collection is refused, never changed."""
    with failures(uri):
        if not client.has_collection(name):
            if not create:
                raise MilvusError(
                    f"no collection {name} at {shown(uri)}: run "
                    "`index export --format milvus --uri URI` first"
                )
            _create(client, uri, name, pin, dim)
        info = client.describe_collection(name)
        if PIN in (info.get("properties") or {}):
            client.load_collection(name)  # searches and queries need it in memory
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
    return props


def _create(client: Any, uri: str, name: str, pin: str, dim: int) -> None:
    """The collection: id, vector (metric IP), digest, content hash, paths and filter fields."""
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("digest", DataType.VARCHAR, max_length=64)
    schema.add_field("hash", DataType.VARCHAR, max_length=256)
    schema.add_field("paths", DataType.VARCHAR, max_length=PATHS_BYTES)
    schema.add_field("folders", DataType.VARCHAR, max_length=PATHS_BYTES)
    schema.add_field("size", DataType.INT64)
    for field in ("width", "height"):
        schema.add_field(field, DataType.INT64, nullable=True)
    for field, length in (("format", 64), ("taken_at", 64), ("camera", 1024)):
        schema.add_field(field, DataType.VARCHAR, max_length=length, nullable=True)
    index = client.prepare_index_params()
    # Milvus Lite: exact search (its HNSW drops matches under a narrow filter); a server: its own
    kind = "AUTOINDEX" if _SERVER.match(uri) else "FLAT"
    index.add_index("vector", index_type=kind, metric_type="IP")
    client.create_collection(
        name,
        schema=schema,
        index_params=index,
        consistency_level="Strong",
        properties={PIN: pin, SYNCED: "", GENERATION: ""},
    )


def set_properties(client: Any, uri: str, name: str, **values: str) -> None:
    """Record sync state on the collection itself (SYNCED, GENERATION)."""
    keys = {"synced": SYNCED, "generation": GENERATION}
    with failures(uri):
        client.alter_collection_properties(name, {keys[k]: v for k, v in values.items()})
