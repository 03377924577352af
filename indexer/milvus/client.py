"""Connecting to Milvus: where (a URI) and who (a token), and its failures as one line.

The URI is a Milvus Lite file (`./photos.milvus.db`, an embedded Milvus) or a server
(`http://host:19530`); the token comes only from the MILVUS_TOKEN variable and is scrubbed from
every message. A Lite URI that is no Milvus Lite database (a FIFO, a device, a plain file, a
folder of other files) is named as such before Milvus Lite touches it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from indexer.errors import SearchError, UserError
from indexer.kinds import file_type
from indexer.text import printable

TOKEN_ENV = "MILVUS_TOKEN"
DEFAULT_COLLECTION = "photos"
TIMEOUT = 30.0  # seconds per call to a server
PATHS_BYTES = 65_535  # Milvus's longest VARCHAR: the JSON list of a content's paths
# the most folder keys a content keeps (one " k1 k2 … " VARCHAR on Lite, an ARRAY on a server:
# layout.py); a content with more ancestor folders than that gets "*", which every filter passes
FOLDER_KEYS = PATHS_BYTES // 33 - 1
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_SERVER = re.compile(r"(https?|tcp|grpcs?)://", re.IGNORECASE)


class MilvusError(SearchError):
    """Milvus cannot be reached or used: pymilvus missing, bad URI, a refused collection."""


def is_server(uri: str) -> bool:
    """A server URI (http, https, tcp, grpc), not a Milvus Lite file."""
    return bool(_SERVER.match(uri))


def check_target(uri: str, collection: str) -> None:
    """MilvusError for a URI that is neither a server nor a `.db` Lite file, or a bad name."""
    if not _NAME.fullmatch(collection):
        raise MilvusError(
            f"--collection {printable(collection)!r}: use letters, digits and _ (not first a digit)"
        )
    if is_server(uri):
        return
    if not uri.endswith(".db"):
        raise MilvusError(
            f"--milvus/--uri {printable(uri)}: give a Milvus Lite file ending in .db "
            "(./photos.milvus.db) or a server (http://host:19530)"
        )
    _check_lite_file(uri)


def _check_lite_file(uri: str) -> None:
    """A Lite URI names nothing yet (in an existing folder), or a Milvus Lite database: a folder
    that Milvus Lite made (or an empty one). Anything else is named: Lite would fail on it with
    "File exists", or write its files among someone else's."""
    path = Path(uri).expanduser().absolute()
    try:
        kind = file_type(path.stat().st_mode)
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise MilvusError(
                f"{printable(uri)}: no folder {printable(path.parent)} for this Lite database"
            ) from None
        return
    except OSError as exc:
        raise MilvusError(f"{printable(uri)}: {exc.strerror or exc}") from None
    if kind == "folder" and _lite_or_empty(path):
        return
    noun = {"regular file": "file", "folder": "folder of other files"}.get(kind, kind)
    raise MilvusError(
        f"{printable(uri)} is a {'link to a ' if path.is_symlink() else ''}{noun}, not a Milvus "
        "Lite database (a folder Milvus Lite makes): give a new path ending in .db "
        "(./photos.milvus.db)"
    )


def _lite_or_empty(folder: Path) -> bool:
    """A folder Milvus Lite made (its LOCK and collections/), or an empty one it may fill."""
    try:
        if (folder / "LOCK").is_file() and (folder / "collections").is_dir():
            return True
        with os.scandir(folder) as entries:
            return next(entries, None) is None
    except OSError:
        return False  # unreadable: not one to write into


def shown(uri: str) -> str:
    """The URI as it may be printed: a password inside it (user:pass@) is masked."""
    if is_server(uri):
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
        raise MilvusError(f"Milvus at {shown(uri)}: {_scrub(_reason(exc))}") from None
    except (OSError, RuntimeError, ValueError) as exc:
        if isinstance(exc, UserError):
            raise
        raise MilvusError(f"Milvus at {shown(uri)}: {_scrub(str(exc))}") from None


def _reason(exc: Any) -> str:
    """pymilvus's message, or the server's own when it refused the token (pymilvus then says
    "illegal connection params or server unavailable", as for a server that is not there)."""
    cause = exc.__cause__ or exc.__context__
    code = getattr(cause, "code", None)
    if callable(code) and getattr(code(), "name", "") == "UNAUTHENTICATED":
        return f"{cause.details()}: set {TOKEN_ENV} to user:password or an API key"
    return exc.message


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
    if is_server(uri):
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
    if is_server(uri):
        return
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:  # another milvus-lite: it lets go at exit
        return
    server_manager_instance.release_server(str(Path(uri).expanduser().absolute()))
