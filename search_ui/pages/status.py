"""Index page: counts, encoder, FAISS type / nprobe / recall, last build, the watcher, the
failure ledger.

Everything comes from `indexer.verify.stats` (the `index stats --json` contract), the catalog
and the watchers' status files (`indexer.watch.status`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import streamlit as st

from indexer.files import human_size
from indexer.store import sync
from indexer.verify import stats
from indexer.watch import status as watch_status
from search_ui.common import Loaded, open_index
from search_ui.text import code, md

_DONE = ("new", "changed", "moved", "deleted", "unchanged", "failed", "embedded")


def _when(path: Any) -> str:
    try:
        return _at(path.stat().st_mtime)
    except OSError:
        return "—"


def _at(seconds: Any) -> str:
    """A time stamp as local 'YYYY-MM-DD HH:MM:SS' ('—' when there is none)."""
    try:
        return dt.datetime.fromtimestamp(float(seconds)).isoformat(" ", "seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return "—"


def _counts(run: dict[str, Any]) -> str:
    return " · ".join(f"{md(run.get(k, 0))} {k}" for k in _DONE)


def _seconds(value: Any) -> str:
    try:
        return f"{float(value):.1f} s"
    except (TypeError, ValueError):
        return "—"


def overview(loaded: Loaded, info: dict[str, Any]) -> None:
    """Counts and the FAISS parameters in one glance."""
    a, b, c, d = st.columns(4)
    a.metric("Images", info["images"])
    b.metric("Vectors", info["vectors"])
    c.metric("Failures", info["failures"])
    recall = info["recall_at_10"]
    d.metric("Recall@10", "—" if recall is None else f"{recall:.3f}")
    ms = info.get("search_ms")
    st.markdown(
        f"**FAISS** {md(info['index_type'] or '—')} · nlist {info['nlist'] or '—'} · "
        f"nprobe {info['nprobe'] or '—'} · {'—' if ms is None else f'{ms:.3f}'} ms/query · "
        f"saved {_when(sync.index_path(loaded.settings.index))}"
    )
    disk = info.get("disk_bytes") or {}
    st.markdown(
        f"**Folder** {code(info['index'])} · {human_size(disk.get('total'))} on disk"
        + ("" if not loaded.settings.weights else f" · weights {code(loaded.settings.weights)}")
    )


def details(info: dict[str, Any], last_build: dict[str, Any] | None) -> None:
    """The encoder identity the index is pinned to and what the last build did."""
    left, right = st.columns(2)
    with left:
        st.subheader("Encoder")
        encoder = info["encoder"] or {}
        st.markdown(f"{code(encoder.get('architecture', '—'))} · {encoder.get('dim', '—')}-d")
        st.json(encoder, expanded=False)
    with right:
        st.subheader("Last build")
        if not last_build:
            st.write("No finished build recorded.")
            return
        st.markdown(_counts(last_build))
        st.markdown(
            f"{last_build.get('seconds', 0):.1f} s · "
            f"{last_build.get('images_per_second', 0):.1f} images/s · "
            f"{last_build.get('images', 0)} images, {last_build.get('vectors', 0)} vectors"
        )
        st.json(last_build, expanded=False)


def watchers(loaded: Loaded) -> None:
    """Whether a watcher (`index watch`, `index serve --watch`) keeps this index current,
    what it watches, when it last ran and what that run did."""
    st.subheader("Watcher")
    records = watch_status.read_all(loaded.settings.index)
    if not records:
        st.write(
            "No watcher has run on this index: `index watch PATH` (or `index serve --watch "
            "PATH`) indexes new and changed photos as they arrive."
        )
        return
    for record in records[:4]:
        _watcher(record)


def _watcher(r: dict[str, Any]) -> None:
    state = str(r.get("state", "?"))
    if r["running"]:
        head = f"**Running** ({md(state)} since {_at(r.get('since'))})"
    elif not r["here"]:
        head = f"**{md(state).capitalize()}** on host {code(r.get('host', '?'))} (not checked)"
    elif state == "stopped":
        head = f"**Not running**: stopped {_at(r.get('since'))}"
    else:
        head = f"**Not running**: the process is gone (killed?) since {_at(r.get('updated_at'))}"
    roots = r.get("roots") if isinstance(r.get("roots"), dict) else {}
    watched = ", ".join(f"{code(p)} ({md(k)})" for p, k in roots.items()) or "—"
    st.markdown(f"{head} · pid {r['pid']} · {md(r.get('runs', 0))} runs · watching {watched}")
    if r.get("message"):
        st.markdown(f"{md(r['message'])}")
    last = r.get("last_run") if isinstance(r.get("last_run"), dict) else None
    if not last:
        st.write("No run finished yet.")
        return
    events = f", {md(last['events'])} events" if last.get("events") else ""
    st.markdown(
        f"Last run {_at(last.get('started_at'))} ({md(last.get('trigger', '?'))}{events}): "
        f"{_counts(last)} · {md(last.get('images', 0))} images · {_seconds(last.get('seconds'))}"
        + (" · **interrupted**" if last.get("interrupted") else "")
    )
    for line in (last.get("warnings") or [])[:5]:
        st.markdown(f"warning: {md(line)}")


def ledger(loaded: Loaded) -> None:
    """The failure ledger, searchable by path, stage or reason."""
    rows = loaded.searcher.catalog.failures()
    st.subheader(f"Failure ledger ({len(rows)})")
    needle = st.text_input("Search the ledger (path, stage or reason)", key="ledger").lower()
    shown = [
        {
            "path": r["path"],
            "stage": r["stage"],
            "reason": r["reason"],
            "attempts": r["attempts"],
            "last seen": dt.datetime.fromtimestamp(r["last_seen"]).isoformat(" ", "seconds"),
        }
        for r in rows
        if needle in f"{r['path']} {r['stage']} {r['reason']}".lower()
    ]
    if rows and not shown:
        st.write("No failure matches.")
    elif shown:
        st.dataframe(shown, width="stretch", hide_index=True)
    else:
        st.write("No file failed to index.")


def main() -> None:
    """The Index page: overview, encoder and last build, then the failure ledger.

    Read fresh on every run, so a build that just finished shows at once.
    """
    st.title("Index")
    opened = open_index()
    if opened is None:
        return
    loaded, _view = opened
    info = stats(loaded.settings)
    overview(loaded, info)
    details(info, loaded.searcher.catalog.get_meta("last_build"))
    watchers(loaded)
    ledger(loaded)


main()
