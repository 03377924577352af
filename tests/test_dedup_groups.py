"""Groups a person can trust: no chaining (every member within the tier's threshold of the kept
file), and flat or transparent pictures that are not near-identical to each other.
"""

from __future__ import annotations

from pathlib import Path

import imagehash
import numpy as np
from conftest import PHOTOS, fill_from_files, fill_planted, make_variants, names
from PIL import Image, ImageDraw

from indexer import imaging
from indexer.build import build
from indexer.dedup import DedupOptions, dedup
from indexer.dedup.graph import cosine_pairs
from indexer.store.catalog import Catalog, Content, Meta


def chain_vectors(gram: np.ndarray, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Unit vectors in `dim` dimensions whose cosines are exactly `gram` (Cholesky, rotated)."""
    basis = np.linalg.cholesky(gram)
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return (np.pad(basis, ((0, 0), (0, dim - len(gram)))) @ rotation).astype(np.float32)


def test_a_chain_is_split_around_the_kept_file(tmp_path):
    # A~B 0.96, B~C 0.96, C~D 0.96; A~C 0.87, B~D 0.87, A~D 0.75: one chain of links
    gram = np.array(
        [[1, 0.96, 0.87, 0.75], [0.96, 1, 0.96, 0.87], [0.87, 0.96, 1, 0.96], [0.75, 0.87, 0.96, 1]]
    )
    x = chain_vectors(gram)
    pairs = cosine_pairs(np.arange(4), x, 0.95)
    assert pairs.as_set() == {(0, 1), (1, 2), (2, 3)}  # the pairs chain A to D
    # a.jpg has the most pixels (fill_planted: the later, the wider): it is kept
    pictures = {n: {"vector": v, "width": 1000 - 100 * i} for i, (n, v) in enumerate(zip(
        ("a.jpg", "b.jpg", "c.jpg", "d.jpg"), x, strict=True))}  # fmt: skip
    fill_planted(tmp_path / "index", pictures, tmp_path)
    report = dedup(tmp_path / "index")
    groups = [g for g in report.groups if g.tier == "near-duplicate"]
    assert [{Path(m["path"]).name for m in g.members} for g in groups] == [
        {"a.jpg", "b.jpg"},
        {"c.jpg", "d.jpg"},  # the rest is grouped again, around its own kept file
    ]
    for g in groups:
        assert all(m["score"] >= 0.95 for m in g.members)
        assert g.min_score == g.max_score and abs(g.min_score - 0.96) < 1e-5
    # with a similar tier, C and D join A's group there only when within its threshold of A
    report = dedup(tmp_path / "index", DedupOptions(similar=0.85))
    sim = [g for g in report.groups if g.tier == "similar"]
    assert names(report, "similar") == [{"a.jpg", "b.jpg", "c.jpg", "d.jpg"}]
    assert sim[0].keep.endswith("a.jpg")
    # C's group joins through its kept file C (0.87 from A); D is 0.75 from A but 0.96 from C
    assert abs(sim[0].min_score - 0.87) < 1e-5 and abs(sim[0].max_score - 0.87) < 1e-5
    assert len(sim[0].contains) == 2


def test_the_middle_of_a_chain_keeps_it_whole(tmp_path):
    gram = np.array([[1, 0.96, 0.87], [0.96, 1, 0.96], [0.87, 0.96, 1]])
    x = chain_vectors(gram, seed=1)
    widths = {"a.jpg": 500, "b.jpg": 900, "c.jpg": 600}  # B, in the middle, is kept
    pictures = {n: {"vector": v, "width": widths[n]} for n, v in zip(widths, x, strict=True)}
    fill_planted(tmp_path / "index", pictures, tmp_path)
    report = dedup(tmp_path / "index")
    (group,) = [g for g in report.groups if g.tier == "near-duplicate"]
    assert group.keep.endswith("b.jpg") and len(group.members) == 3
    assert group.min_score == group.max_score and abs(group.min_score - 0.96) < 1e-5
    scores = sorted(m["score"] for m in group.members)
    assert np.allclose(scores, [0.96, 0.96, 1.0], atol=1e-5)


def test_real_crops_that_chain_by_phash(tmp_path):
    """A photo, a 4 % crop and a 10 % crop: each crop is within 10 bits of the next, but the
    10 % crop is 12 bits from the photo. The kept photo's group holds only what is near it."""
    src = imaging.to_rgb(imaging.open_image(PHOTOS / "flat" / "cake.jpg")[0])
    w, h = src.size
    paths = [tmp_path / "lib" / n for n in ("cake.png", "cake-crop4.png", "cake-crop10.png")]
    paths[0].parent.mkdir()
    for path, part in zip(paths, (0, 0.02, 0.05), strict=True):
        dx, dy = round(w * part), round(h * part)
        src.crop((dx, dy, w - dx, h - dy)).save(path)
    hashes = [imaging.perceptual_hash(Image.open(p)) for p in paths]
    d = {(i, j): imaging.hamming(hashes[i], hashes[j]) for i in range(3) for j in range(3)}
    assert d[0, 1] <= 10 and d[1, 2] <= 10 and d[0, 2] > 10  # a chain, as measured
    fill_from_files(tmp_path / "index", paths)
    report = dedup(tmp_path / "index")
    near = [g for g in report.groups if g.tier == "near-identical"]
    assert [g.keep for g in near] == [str(paths[0])]
    assert {m["path"] for m in near[0].members} == {str(paths[0]), str(paths[1])}
    assert near[0].min_score == near[0].max_score == 1 - d[0, 1] / 64


def logo(shape: str, under: Image.Image | None = None, size: int = 240) -> Image.Image:
    """A logo whose shape lives only in its alpha channel (as icon exports are), over one
    colour or over the pixels of `under` (a template: the same pixels under another mask)."""
    img = under.resize((size, size)).convert("RGBA") if under else None
    img = img or Image.new("RGBA", (size, size), (20, 20, 20, 0))
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "ring":
        draw.ellipse((30, 30, size - 30, size - 30), fill=255)
        draw.ellipse((80, 80, size - 80, size - 80), fill=0)
    else:
        draw.polygon([(size // 2, 20), (size - 20, size - 20), (20, size - 20)], fill=255)
    img.putalpha(mask)
    return img


def old_phash(path: Path) -> int:
    """The hash version 1 stored: imagehash.phash of the picture with its alpha dropped."""
    bits = imagehash.phash(imaging.to_rgb(imaging.open_image(path)[0])).hash.flatten()
    value = int("".join("1" if b else "0" for b in bits), 2)
    return value - (1 << 64) if value >= 1 << 63 else value


def test_the_phash_is_imagehash_phash_on_every_opaque_fixture_photo():
    """imagehash (scipy's DCT) is the oracle of the numpy pHash the build stores."""
    photos = [p for p in sorted(PHOTOS.rglob("*")) if p.is_file() and p.suffix != ".txt"]
    compared = 0
    for path in photos:
        try:
            img = imaging.open_image(path)[0]
        except imaging.ImageError:
            continue  # HEIC without pillow-heif
        if not imaging.has_alpha(img):
            assert imaging.perceptual_hash(img) == old_phash(path), path.name
            compared += 1
    assert compared >= 30


def test_flat_and_transparent_pictures_are_not_near_identical(settings, tiny_encoder, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    logo("ring").save(lib / "ring.png")
    logo("triangle").save(lib / "triangle.png")
    # the ring flattened onto white, as exporting it to JPEG does: still the same picture
    ring = Image.alpha_composite(Image.new("RGBA", (240, 240), "white"), logo("ring"))
    ring.convert("RGB").save(lib / "ring on white.jpg", quality=90)
    Image.new("RGB", (640, 480), "white").save(lib / "white.jpg")
    Image.new("RGB", (300, 300), (128, 128, 128)).save(lib / "grey.png")
    Image.new("RGB", (300, 200), "black").save(lib / "black.webp")
    photo = PHOTOS / "flat" / "books.jpg"
    copies = make_variants(photo, lib / "edits")  # half size, JPEG q60, a 3 % crop, PNG→WebP
    (lib / "books.jpg").write_bytes(photo.read_bytes())
    # dropping alpha made both logos one dark square: the old hash could not tell them apart
    for name in ("ring.png", "triangle.png", "white.jpg", "grey.png", "black.webp"):
        old = Image.open(lib / name).convert("RGB").convert("L").resize((32, 32))
        assert np.asarray(old).std() < 1  # what the old hash saw: a flat picture
    build([lib], settings, encoder=tiny_encoder)

    cat = Catalog(settings.index, readonly=True)
    stored = {r["path"]: r["phash"] for r in cat.records()}
    cat.close()
    for name in ("white.jpg", "grey.png", "black.webp"):  # a flat picture has no pHash
        assert stored[str(lib / name)] is None, name
    assert imaging.hamming(stored[str(lib / "ring.png")], stored[str(lib / "triangle.png")]) > 20
    near = names(dedup(settings.index), "near-identical")
    assert {"ring.png", "ring on white.jpg"} in near  # alpha seen over white, like the export
    grouped = [n for g in near for n in g]
    for name in ("triangle.png", "white.jpg", "grey.png", "black.webp"):
        assert name not in grouped, near
    # the tiers still find every copy of a real photo
    assert {"books.jpg", *(p.name for p in copies)} in near


def test_an_older_index_gets_the_new_phashes_without_re_embedding(settings, tiny_encoder, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    template = Image.open(PHOTOS / "flat" / "cake.jpg")
    for shape in ("ring", "triangle"):  # one template's pixels under two different masks
        logo(shape, template).save(lib / f"{shape}.png")
    (lib / "books.jpg").write_bytes((PHOTOS / "flat" / "books.jpg").read_bytes())
    build([lib], settings, encoder=tiny_encoder)
    # what an older version stored: hashes of the pictures with alpha dropped, no version
    cat = Catalog(settings.index)
    paths = {r["content_id"]: Path(r["path"]) for r in cat.records()}
    with cat.session() as s:
        for content in s.query(Content):
            content.phash = old_phash(paths[content.id])
        s.query(Meta).filter(Meta.key == "phash_version").delete()
    with cat.session() as s:
        embedded = dict(s.query(Content.id, Content.embedded_at))
    cat.close()
    old = dedup(settings.index)
    assert old.search["near-identical"]["phash_version"] == 1
    assert old.search["near-identical"]["pairs"] == 1  # the old hashes linked the two logos,
    assert names(old, "near-identical") == []  # their pixels (over white) keep them apart

    summary = build([lib], settings, encoder=tiny_encoder)  # nothing changed on disk
    assert summary.embedded == 0 and "phash_refresh" in summary.stages
    new = dedup(settings.index)
    assert names(new, "near-identical") == [] and new.search["near-identical"]["phash_version"] == 2
    cat = Catalog(settings.index, readonly=True)
    with cat.session() as s:
        assert dict(s.query(Content.id, Content.embedded_at)) == embedded  # not re-embedded
        stored = dict(s.query(Content.id, Content.phash))
    cat.close()
    for cid, path in paths.items():
        assert stored[cid] == imaging.perceptual_hash(imaging.open_image(path)[0]), path.name


def test_a_long_chain_keeps_every_member_near_its_kept_file(tmp_path):
    """60 pictures, each 0.96-ish from the next (more than a piece that is chosen from directly:
    the keep rule ranks it once); the widest first, so every round's kept file is at an end."""
    rng = np.random.default_rng(7)
    x = [rng.standard_normal(64)]
    for _ in range(59):
        step = x[-1] / np.linalg.norm(x[-1]) + 0.25 * rng.standard_normal(64) / 8
        x.append(step)
    x = np.array([v / np.linalg.norm(v) for v in x], np.float32)
    pairs = cosine_pairs(np.arange(60), x, 0.95)
    assert {(i, i + 1) for i in range(59)} <= pairs.as_set()  # one chain end to end
    # each 2 % narrower than the one before: more pixels decide (the keep rule's margin is 1 %)
    widths = [int(10_000 * 0.98**i) for i in range(60)]
    pictures = {f"p{i:02d}.jpg": {"vector": v, "width": widths[i]} for i, v in enumerate(x)}
    fill_planted(tmp_path / "index", pictures, tmp_path)
    report = dedup(tmp_path / "index")
    groups = [g for g in report.groups if g.tier == "near-duplicate"]
    assert len(groups) > 1
    for g in groups:
        kept = int(Path(g.keep).stem[1:])
        assert kept == min(int(Path(m["path"]).stem[1:]) for m in g.members)  # the widest
        for m in g.members:
            assert float(x[int(Path(m["path"]).stem[1:])] @ x[kept]) >= 0.95 - 1e-6
            assert m["score"] >= 0.95 - 1e-6
    # the first group is every picture within the threshold of p00, and nothing else
    near_first = {i for i in range(60) if float(x[i] @ x[0]) >= 0.95}
    first = next(g for g in groups if g.keep.endswith("p00.jpg"))
    assert {int(Path(m["path"]).stem[1:]) for m in first.members} == near_first
