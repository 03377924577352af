"""Reading the FAISS file as untrusted input: its header checked against the catalog before
FAISS allocates anything, and every length FAISS reads bounded by the file's own size.

The file and its state (`vectors.json`) are derived data in a folder that may have been
tampered with; a checksum in the state proves nothing, since whoever edits one can recompute
the other. What the catalog says (the vectors' dimension, how many contents exist) is the
reference: a file that disagrees is refused with IndexFileError and rebuilt from the catalog.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import faiss

from indexer.errors import IndexFileError
from indexer.files import file_digest
from indexer.store import homefiles

STATE_LIMIT = 1 << 20  # bytes: vectors.json is a few hundred; more is not ours
_HEADER = struct.Struct("<4siq")  # every FAISS index starts: fourcc, d (int32), ntotal (int64)
_ID_BYTES = 8  # each stored vector costs at least its int64 id
_LIMITS = threading.Lock()  # FAISS's read limits are process-wide: one guarded read at a time


@dataclass(frozen=True)
class Expected:
    """What the catalog says a FAISS file of this index must hold: vectors of `dim`, at most
    `max_vectors` of them (the highest content id: ids are positive and distinct)."""

    dim: int
    max_vectors: int


def read_state(path: Path) -> dict[str, Any]:
    """The state beside a FAISS file (`vectors.json`), read without following a link."""
    try:
        state = json.loads(homefiles.read_bytes(path.parent, path, STATE_LIMIT))
    except (OSError, ValueError):
        raise IndexFileError(f"{path}: its state file is missing or unreadable") from None
    if not isinstance(state, dict):
        raise IndexFileError(f"{path}: its state file does not describe an index")
    return state


def read_index(path: Path, state: dict[str, Any], expected: Expected | None) -> Any:
    """The FAISS index at `path` after its size, checksum and header agree with `state` and
    `expected`; IndexFileError naming the first disagreement. FileNotFoundError if absent."""
    try:
        fh = homefiles.open_read(path.parent, path)
    except homefiles.HomeFileError as exc:
        raise IndexFileError(str(exc)) from None
    with fh:
        size = _check_size(path, fh, state)
        header = fh.read(_HEADER.size)
        if len(header) < _HEADER.size:
            raise IndexFileError(f"{path}: too short to be a FAISS index")
        _check_header(path, _HEADER.unpack(header), size, state, expected)
        fh.seek(0)
        if file_digest(fh, "blake2b-128") != state.get("faiss_blake2b"):
            raise IndexFileError(f"{path}: its checksum is not the one its state names")
        return _bounded_read(path, fh, size)


def _check_size(path: Path, fh: BinaryIO, state: dict[str, Any]) -> int:
    size = int(os.fstat(fh.fileno()).st_size)
    if size != state.get("faiss_bytes"):
        raise IndexFileError(f"{path}: file is truncated, corrupt or not the one its state names")
    return size


def _check_header(
    path: Path,
    header: tuple[bytes, int, int],
    size: int,
    state: dict[str, Any],
    expected: Expected | None,
) -> None:
    """The header's dimension and vector count against the state and the catalog, and the
    file's size against that count (every vector costs at least its id)."""
    _fourcc, dim, ntotal = header
    if dim != state.get("dim") or (expected is not None and dim != expected.dim):
        want = expected.dim if expected is not None else state.get("dim")
        raise IndexFileError(f"{path}: holds {dim}-d vectors, the catalog's are {want}-d")
    if ntotal != state.get("ntotal") or ntotal < 0:
        raise IndexFileError(f"{path}: its header claims {ntotal} vectors, its state another")
    if expected is not None and ntotal > expected.max_vectors:
        raise IndexFileError(
            f"{path}: claims {ntotal} vectors, more than the catalog's "
            f"{expected.max_vectors} contents"
        )
    if ntotal * _ID_BYTES > size:
        raise IndexFileError(f"{path}: claims {ntotal} vectors in a {size}-byte file")


def _bounded_read(path: Path, fh: BinaryIO, size: int) -> Any:
    """faiss.read_index on the open file, no single array longer than the file itself: a
    length field that lies fails at once instead of allocating what it claims."""
    with _LIMITS:
        before = faiss.get_deserialization_vector_byte_limit()
        faiss.set_deserialization_vector_byte_limit(size + 1)
        try:
            return faiss.read_index(homefiles.reopen_path(fh, path))
        except (RuntimeError, MemoryError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:200]
            raise IndexFileError(f"{path}: FAISS cannot read it ({reason})") from None
        finally:
            faiss.set_deserialization_vector_byte_limit(before)
