"""Shared test fixtures and helpers: the real photo corpus (and its counts, derived from the
files), the tiny CLIP checkpoints in tests/fixtures/, catalog fillers and the CLI runner.

Helpers used by more than one test module live here, never in a test module."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"
PHOTOS = FIXTURE_DIR / "photos"
FIXTURES = FIXTURE_DIR / "clip-vit-tiny"
TINY_BIRDER = FIXTURES / "tiny_birder.pt"
TINY_OPEN_CLIP = FIXTURES / "tiny_open_clip.safetensors"
TINY_HF = FIXTURES / "tiny_hf"
EXPECTED = dict(np.load(FIXTURES / "tiny_expected.npz"))  # the reference outputs (birder 0.8.4)

# the Milvus server fixture and the Lite/server targets of tests/test_milvus*.py
pytest_plugins = ["tests.milvus_server"]


def normalized(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (the reference keeps raw projections)."""
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="session")
def tiny_encoder():
    """The tiny random-weight encoder (Birder layout), loaded once per test session."""
    from indexer.encoder import load_encoder

    return load_encoder(TINY_BIRDER, device="cpu")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A private, writable copy of tests/fixtures/photos (tests rename, edit and delete in it)."""
    dest = tmp_path / "photos"
    shutil.copytree(PHOTOS, dest)
    for p in dest.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    dest.chmod(0o755)
    return dest


@pytest.fixture
def settings(tmp_path: Path):
    """Settings for a fresh index in tmp with the tiny weights, 1 decode worker."""
    from indexer.settings import Settings

    return Settings.from_env(
        env={}, index=tmp_path / "index", weights=str(TINY_BIRDER), workers=1, batch_size=8
    )


class Gallery(HTMLParser):
    """What a browser would load: the report's JSON data block, and any external asset."""

    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.summary: list[list[str]] = []
        self._in_data = False
        self._text = ""
        self.data: dict = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "link" or (tag == "script" and a.get("src")) or tag == "img":
            self.external.append(tag)  # nothing outside the file, no eager <img> in the DOM
        self._in_data = tag == "script" and a.get("id") == "report-data"
        if tag == "tr":
            self.summary.append([])

    def handle_data(self, data):
        if self._in_data:
            self.data = json.loads(data)
        elif self.lasttag in ("th", "td") and self.summary:
            self.summary[-1].append(data)

    def handle_endtag(self, tag):
        self._in_data = False


# --------------------------------------------------------------------------- the corpus's counts
def _is_picture(path: Path) -> bool:
    """Whether Pillow (or pillow-heif, for HEIC) recognises the file: an oracle outside our code."""
    try:
        with Image.open(path):
            return True
    except OSError:
        import pillow_heif

        return bool(pillow_heif.is_supported(str(path)))


def _corpus() -> dict[str, str]:
    """Every picture of tests/fixtures/photos: its path relative to it -> sha256 of its bytes."""
    return {
        p.relative_to(PHOTOS).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(PHOTOS.rglob("*"))
        if p.is_file() and _is_picture(p)
    }


CORPUS = _corpus()
CORPUS_PICTURES = len(CORPUS)  # files an index of the whole corpus lists
CORPUS_CONTENTS = len(set(CORPUS.values()))  # distinct contents: the vectors it embeds
CORPUS_COPY_GROUPS = sum(  # contents held by two files or more: the exact duplicate groups
    n > 1 for n in (list(CORPUS.values()).count(h) for h in set(CORPUS.values()))
)


def pictures_in(folder: str) -> list[str]:
    """The corpus pictures under `folder` (relative to PHOTOS), at any depth."""
    return [p for p in CORPUS if p.startswith(folder.rstrip("/") + "/")]


# --------------------------------------------------------------------------- generated pictures
def make_distinct_jpegs(folder: Path, n: int, seed: int = 0) -> None:
    """`n` different pictures: random crops of the real photos."""
    rng = random.Random(seed)
    sources = sorted((PHOTOS / "flat").glob("*.jpg"))
    folder.mkdir(parents=True, exist_ok=True)
    opened = [Image.open(p).convert("RGB") for p in sources]
    used: set[tuple[int, int, int]] = set()
    for i in range(n):
        img = opened[i % len(opened)]
        w, h = img.size
        x, y = rng.randrange(w // 3), rng.randrange(h // 3)
        while (i % len(opened), x, y) in used:  # the same crop twice would be one picture
            x, y = rng.randrange(w // 3), rng.randrange(h // 3)
        used.add((i % len(opened), x, y))
        crop = img.crop((x, y, x + w // 2, y + h // 2)).resize((160, 120))
        crop.save(folder / f"img_{i:04d}.jpg", quality=85)


def make_variants(src: Path, dest: Path) -> list[Path]:
    """The edits people make: half size, JPEG quality 60, PNG→WebP, a 3 % crop."""
    from indexer import imaging

    dest.mkdir(parents=True, exist_ok=True)
    img, _ = imaging.open_image(src)
    img = imaging.to_rgb(img)
    w, h = img.size
    stem = src.stem.replace(" ", "_")
    half, q60, crop, webp = (
        dest / f"{stem}-{v}" for v in ("half.jpg", "q60.jpg", "crop.jpg", "x.webp")
    )
    img.resize((w // 2, h // 2), Image.LANCZOS).save(half, quality=92)
    img.save(q60, quality=60)
    dx, dy = round(w * 0.015), round(h * 0.015)  # 3 % of width and height, centred
    img.crop((dx, dy, w - dx, h - dy)).save(crop, quality=92)
    png = dest / f"{stem}.png"
    img.save(png)
    Image.open(png).save(webp, quality=80)
    png.unlink()
    return [half, q60, crop, webp]


def clustered(
    n: int, dim: int, clusters: int = 200, seed: int = 0, spread: float = 0.35
) -> np.ndarray:
    """Normalized gaussian clusters: the shape of real photo embeddings."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    picked = centers[rng.integers(0, clusters, n)]
    x = picked + spread * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --------------------------------------------------------------------------- catalogs
def fill_from_files(index: Path, paths: list[Path]) -> None:
    """What a build stores about pictures, without the encoder: content hash, metadata, pHash."""
    from indexer import imaging
    from indexer.files import content_hash
    from indexer.store.catalog import Catalog, Content, File

    cat = Catalog(index)
    contents: dict[str, int] = {}
    with cat.session() as s:
        for path in paths:
            digest = content_hash(path)
            if digest not in contents:
                img, meta = imaging.open_image(path)
                contents[digest] = len(contents) + 1
                s.add(
                    Content(
                        id=contents[digest],
                        hash=digest,
                        size=path.stat().st_size,
                        width=meta.width,
                        height=meta.height,
                        format=meta.format,
                        taken_at=meta.taken_at,
                        phash=imaging.perceptual_hash(img),
                    )
                )
            st = path.stat()
            s.add(
                File(
                    path=str(path),
                    content_id=contents[digest],
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    indexed_at=time.time(),
                )
            )
    cat.close()


def fill_planted(index: Path, pictures: dict[str, dict], root: Path) -> None:
    """Contents with crafted vectors (and optional pHash) under made-up paths."""
    from indexer.store.catalog import Catalog, Content, File

    cat = Catalog(index)
    with cat.session() as s:
        for i, (name, spec) in enumerate(pictures.items(), start=1):
            v = np.asarray(spec["vector"], np.float32)
            v = v / np.linalg.norm(v)
            s.add(
                Content(
                    id=i,
                    hash=f"{i:064x}",
                    size=1000 * i,
                    width=spec.get("width", 100 * i),
                    height=100,
                    format="JPEG",
                    phash=spec.get("phash"),
                    vector=v.tobytes(),
                    embedded_at=time.time(),
                )
            )
            s.add(
                File(path=str(root / name), content_id=i, size=1000 * i, mtime_ns=i, indexed_at=0.0)
            )
        Catalog.set_meta(s, "dim", len(v))
    cat.close()


def check_consistent(index: Path, expected: int) -> None:
    """Catalog images == vectors == FAISS ids == `expected`, same generation, no temp files."""
    from indexer.store import sync, vectors
    from indexer.store.catalog import Catalog

    cat = Catalog(index, readonly=True)
    ids, _ = cat.all_vectors()
    assert len(ids) == expected == cat.counts()["images"]
    faiss_index, state = vectors.load(sync.index_path(index))
    assert np.array_equal(np.sort(faiss_index.ids()), np.sort(ids))
    assert state["generation"] == cat.generation()
    leftovers = [p.name for p in index.iterdir() if ".tmp" in p.name]
    assert leftovers == []


def catalog_by_hash(index: Path) -> tuple[dict, dict]:
    """({path: its record}, {content hash: vector}) of an index: what two builds of the same
    files must agree on, whatever content ids each assigned (Ray commits in any order)."""
    from indexer.store.catalog import Catalog

    cat = Catalog(index, readonly=True)
    records = {r["path"]: r for r in cat.records()}
    ids, vecs = cat.all_vectors()
    hashes = {r["content_id"]: r["hash"] for r in records.values()}
    return records, {hashes[i]: v for i, v in zip(ids.tolist(), vecs, strict=True)}


def names(report, tier: str) -> list[set[str]]:
    """The file names of each group of `tier` in a dedup report."""
    return [{Path(m["path"]).name for m in g.members} for g in report.groups if g.tier == tier]


def files_of(root: Path) -> dict[Path, str]:
    """Every file under `root` (relative path) -> its content hash: to see what moved."""
    from indexer.files import content_hash

    return {p.relative_to(root): content_hash(p) for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- processes
def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 now (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_script(script: Path, *args: str) -> subprocess.CompletedProcess:
    """Run a generated script (the quarantine script) as a user would."""
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=60
    )


def index_cli(
    *args: object, text: bool = True, timeout: float = 300, **kw
) -> subprocess.CompletedProcess:
    """`index ARGS...` in a fresh process (this checkout first on the path), output captured."""
    kw.setdefault("env", {**os.environ, "PYTHONPATH": str(ROOT)})
    return subprocess.run(
        [sys.executable, "-m", "indexer.cli", *map(str, args)],
        capture_output=True,
        text=text,
        timeout=timeout,
        **kw,
    )


def invoke(*args: object):
    """`index ARGS...` in this process (typer's CliRunner): exit code, stdout and stderr."""
    from typer.testing import CliRunner

    from indexer.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


# --------------------------------------------------------------------------- the UI's index
APP = str(ROOT / "search_ui" / "app.py")


@pytest.fixture(scope="module")
def built_index(tmp_path_factory, tiny_encoder) -> Path:
    """The whole corpus indexed, plus two files that claim to be pictures and are not."""
    from indexer.build import build
    from indexer.settings import Settings

    root = tmp_path_factory.mktemp("ui")
    shutil.copytree(PHOTOS, root / "photos")
    flat = root / "photos" / "flat"
    (flat / "not-an-image.jpg").write_bytes((flat / "not-an-image.txt").read_bytes())
    (flat / "broken.jpg").write_bytes((flat / "cat.jpg").read_bytes()[:2000])
    index = root / "index"
    settings = Settings.from_env(env={}, index=index, weights=str(TINY_BIRDER), workers=1)
    build([root / "photos"], settings, encoder=tiny_encoder)
    return index


@pytest.fixture
def env(monkeypatch, built_index):
    """PHOTO_INDEX_* as `index serve` sets them, for the Streamlit app on `built_index`."""
    monkeypatch.setenv("PHOTO_INDEX_INDEX", str(built_index))
    monkeypatch.setenv("PHOTO_INDEX_WEIGHTS", str(TINY_BIRDER))
    monkeypatch.setenv("PHOTO_INDEX_DEVICE", "cpu")
    return built_index


def torchscript_clip(path: Path, params: dict, buffers: dict) -> Path:
    """A tiny TorchScript archive shaped like OpenAI's ViT-L-14.pt: `params` as parameters
    at their dotted paths, `buffers` as tensor buffers, a forward that uses logit_scale."""
    import torch

    class CLIP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name, value in buffers.items():
                self.register_buffer(name, value)
            for key, value in params.items():
                *parts, leaf = key.split(".")
                mod = self
                for part in parts:
                    if not hasattr(mod, part):
                        mod.add_module(part, torch.nn.Module())
                    mod = getattr(mod, part)
                mod.register_parameter(leaf, torch.nn.Parameter(value, requires_grad=False))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.logit_scale

    torch.jit.script(CLIP()).save(str(path))
    return path
