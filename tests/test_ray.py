"""The Ray engine on a local Ray instance: same rows and vectors, resumable; Parquet export."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import CORPUS_CONTENTS, catalog_by_hash, clustered

from indexer.build import build
from indexer.store.catalog import Catalog
from indexer.verify import verify

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_engine_matches_local_engine(photos, settings):
    local = build([photos], settings)
    on_ray = replace(settings, index=settings.index.parent / "ray-index", engine="ray")
    remote = build([photos], on_ray)
    for key in ("new", "failed", "embedded", "images", "vectors"):
        assert getattr(local, key) == getattr(remote, key)
    rec_a, vec_a = catalog_by_hash(settings.index)
    rec_b, vec_b = catalog_by_hash(on_ray.index)
    strip = ("content_id", "mtime_ns")
    assert {p: {k: v for k, v in r.items() if k not in strip} for p, r in rec_a.items()} == {
        p: {k: v for k, v in r.items() if k not in strip} for p, r in rec_b.items()
    }
    assert vec_a.keys() == vec_b.keys()
    assert max(np.abs(vec_a[h] - vec_b[h]).max() for h in vec_a) <= 1e-5


def test_interrupted_ray_build_resumes(photos, settings):
    on_ray = replace(settings, engine="ray", batch_size=4)
    seen = []

    def interrupt(event, **fields):
        if event == "embed":
            seen.append(fields["done"])
            raise KeyboardInterrupt  # Ctrl-C after the first committed batch

    with pytest.raises(KeyboardInterrupt):
        build([photos], on_ray, progress=interrupt)
    committed = Catalog(on_ray.index, readonly=True).counts()["vectors"]
    assert seen and 0 < committed < CORPUS_CONTENTS
    rest = build([photos], on_ray)
    assert rest.embedded == CORPUS_CONTENTS - committed and rest.vectors == CORPUS_CONTENTS
    assert verify(on_ray)["problems"] == {}


def test_export_parquet_round_trip(photos, settings, tmp_path):
    import pyarrow.parquet as pq

    from indexer.store.export import export_parquet

    build([photos / "flat"], settings)
    out = tmp_path / "photos.parquet"
    rows = export_parquet(settings.index, out)
    table = pq.read_table(out).to_pylist()
    cat = Catalog(settings.index, readonly=True)
    assert rows == len(table) == cat.counts()["images"]
    for row in table:
        stored = cat.vector_for(row["id"])
        assert np.array_equal(np.asarray(row["vector"], np.float32), stored)
        assert row["path"].startswith(str(photos / "flat"))


def test_sharded_ivf_on_ray_equals_one_pass():
    from indexer.build.ray_engine import ray_map
    from indexer.store.vectors import IndexSpec, VectorIndex

    x = clustered(8000, 16)
    ids = np.arange(8000) + 100
    one = VectorIndex.create(IndexSpec("ivf-flat", 64), 16)
    one.build(ids, x)
    sharded = VectorIndex.create(IndexSpec("ivf-flat", 64), 16)
    sharded.build_sharded(ids, x, 3, ray_map)
    assert sharded.ntotal == 8000
    q = x[:100]
    assert np.array_equal(one.search(q, 10, nprobe=4)[1], sharded.search(q, 10, nprobe=4)[1])
