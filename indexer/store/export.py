"""`index export --format parquet`: one row per path with its vector, for bulk import elsewhere.

Columns: id (content id = FAISS id), path, content_hash, vector (list<float32>[dim]), size,
width, height, format, taken_at, camera, phash. Milvus and LanceDB import such files directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexer.atomic import atomic_path
from indexer.store.catalog import Catalog


class ExportError(RuntimeError):
    """The export cannot be written (pyarrow missing, bad format)."""


def export_parquet(index_dir: str | Path, output: str | Path, batch: int = 50_000) -> int:
    """Write the catalog as Parquet (atomically); returns the number of rows."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportError("Parquet export needs pyarrow: pip install 'photo-index[ray]'") from None
    cat = Catalog(index_dir, readonly=True)
    output = Path(output)
    dim = int(cat.get_meta("dim", 0))
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("path", pa.string()),
            ("content_hash", pa.string()),
            ("vector", pa.list_(pa.float32(), dim)),
            ("size", pa.int64()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("format", pa.string()),
            ("taken_at", pa.string()),
            ("camera", pa.string()),
            ("phash", pa.int64()),
        ]
    )
    try:
        with atomic_path(output) as tmp, pq.ParquetWriter(tmp, schema) as writer:
            rows = _write_rows(cat, writer, batch, dim)
    finally:
        cat.close()
    return rows


def _write_rows(cat: Catalog, writer: object, batch: int, dim: int) -> int:
    """Every catalog path with its vector, `batch` rows per Parquet row group."""
    import pyarrow as pa

    rows = 0
    records = cat.records()
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        ids, vecs = cat.vectors_for(r["content_id"] for r in chunk)
        by_id = dict(zip(ids.tolist(), vecs, strict=True))
        chunk = [r for r in chunk if r["content_id"] in by_id]
        flat = np.concatenate([by_id[r["content_id"]] for r in chunk]) if chunk else []
        columns = {
            "id": [r["content_id"] for r in chunk],
            "path": [r["path"] for r in chunk],
            "content_hash": [r["hash"] for r in chunk],
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(np.asarray(flat, np.float32)), dim
            ),
        }
        for name in ("size", "width", "height", "format", "taken_at", "camera", "phash"):
            columns[name] = [r[name] for r in chunk]
        writer.write_table(pa.table(columns, schema=writer.schema))  # type: ignore[attr-defined]
        rows += len(chunk)
    return rows
