"""What `pip install .` puts on disk: the packages the default install pulls (this project's
dependencies and theirs, as pyproject.toml declares them) and their size, read from an
environment where they are installed (their RECORD files), so no download is needed.

    python bench/install_size.py                    # the default install
    python bench/install_size.py --extra heic --extra raw
    python bench/install_size.py --also imagehash   # what a dependency would add

The figure depends on the torch build installed (CPU or CUDA): it is printed per package.
"""

from __future__ import annotations

import argparse
from importlib import metadata
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def declared(extras: list[str]) -> list[Requirement]:
    """The requirements pyproject.toml declares for the default install plus `extras`."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


def closure(roots: list[Requirement]) -> dict[str, metadata.Distribution]:
    """Every installed distribution the requirements pull, by canonical name."""
    found: dict[str, metadata.Distribution] = {}
    todo = [(r, "") for r in roots]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        if name == "photo-index":  # an extra naming another extra of this project
            todo += [(r, e) for e in req.extras for r in declared([e])]
            continue
        try:
            dist = found.get(name) or metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            print(f"not installed here: {req.name}")
            continue
        new = name not in found
        found[name] = dist
        for sub in dist.requires or ():
            sub_req = Requirement(sub)
            wanted = [""] if sub_req.marker is None else ["", *req.extras]
            for e in wanted:
                if sub_req.marker is None or sub_req.marker.evaluate({"extra": e}):
                    if new or e:
                        todo.append((sub_req, e))
                    break
    return found


def size_of(dist: metadata.Distribution) -> int:
    total = 0
    for f in dist.files or ():
        path = Path(dist.locate_file(f))
        if path.is_file():
            total += path.stat().st_size
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--extra", action="append", default=[], help="an extra of pyproject.toml")
    ap.add_argument("--also", action="append", default=[], help="another requirement")
    args = ap.parse_args()
    dists = closure(declared(args.extra) + [Requirement(r) for r in args.also])
    sizes = sorted((size_of(d), d.metadata["Name"], d.version) for d in dists.values())[::-1]
    for size, name, ver in sizes:
        print(f"{size / 1e6:9.1f} MB  {name} {ver}")
    total = sum(s for s, _, _ in sizes)
    what = "default install" + "".join(f" + [{e}]" for e in args.extra)
    what += "".join(f" + {r}" for r in args.also)
    print(f"{what}: {len(sizes)} packages, {total / 1e6:,.0f} MB ({total / 2**30:.2f} GiB)")


if __name__ == "__main__":
    main()
