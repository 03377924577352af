"""Duplicates page: the tiers and groups of `indexer.dedup`, side by side, kept file marked.

Thresholds and the keep rule go straight into `DedupOptions`; the reports and the quarantine
script are the library's own writers, offered as downloads. Built for 100,000 groups: the report
is computed once per catalog state and options, and only one page of groups (and thumbnails)
is rendered per run, after a per-tier summary and tier/folder filters.
"""

from __future__ import annotations

import hashlib
import os
from functools import partial
from typing import Any

import streamlit as st

from indexer.dedup import DEFAULT_KEEP, TIERS, DedupOptions, Group, KeepRuleError, Report, dedup
from indexer.dedup.review import (
    TierSummary,
    edits_in,
    page_count,
    select,
    summarize,
    threshold_words,
)
from indexer.files import human_size
from indexer.imaging import DecodeOptions
from search_ui.common import CatalogView, Loaded, catalog_stamp, open_index, thumb
from search_ui.text import code, describe, md

PER_ROW = 6
PAGE_SIZES = (20, 50)
ALL = "(all)"


@st.cache_resource(show_spinner="Finding duplicates…", max_entries=4)
def _report(
    index: str, stamp: tuple[Any, ...], options: tuple[Any, ...], decode: DecodeOptions
) -> Report:
    """The dedup report for these options, recomputed only when the catalog changes.

    A resource, not data: 100k groups are not pickled and copied on every rerun (read only).
    """
    hamming, near, similar, keep, prefer = options
    return dedup(
        index,
        DedupOptions(
            hamming=hamming, near_duplicate=near, similar=similar, keep=keep, prefer=prefer
        ),
        decode,
    )


def sidebar_options(view: CatalogView) -> tuple[Any, ...]:
    """Thresholds, the keep rule and preferred folders (the `index dedup` flags)."""
    with st.sidebar:
        st.header("Thresholds")
        hamming = st.slider("Near-identical: max pHash distance (bits)", 0, 24, 10, key="hamming")
        near = st.slider("Near-duplicate: min CLIP cosine", 0.80, 1.0, 0.95, 0.005, key="near")
        similar = None
        if st.checkbox("Show the 'similar' tier (bursts, series)", key="use_similar"):
            similar = st.slider("Similar: min CLIP cosine", 0.50, 0.95, 0.85, 0.01, key="similar")
        st.header("Which copy to keep")
        keep = st.text_input("Keep rule (first criterion wins)", DEFAULT_KEEP, key="keep")
        prefer = st.multiselect("Prefer copies in", view.folders, key="prefer")
    return hamming, near, similar, keep.strip() or DEFAULT_KEEP, tuple(prefer)


def downloads(report: Report) -> None:
    """The report in every format and the quarantine script, from the library's writers.

    Each is made when its button is clicked (the HTML report embeds thumbnails).
    """
    cols = st.columns(4)
    files = (
        ("Report (JSON)", "json", "duplicates.json", "application/json"),
        ("Report (CSV)", "csv", "duplicates.csv", "text/csv"),
        ("Report (HTML)", "html", "duplicates.html", "text/html"),
    )
    for col, (label, fmt, name, mime) in zip(cols, files, strict=False):
        col.download_button(
            label, partial(report.render, fmt), name, mime, key=f"dl-{fmt}", on_click="ignore"
        )
    cols[3].download_button(
        "Quarantine script",
        partial(report.quarantine_script, "quarantine.py"),
        "quarantine.py",
        "text/x-python",
        key="dl-script",
        help="Moves the non-kept copies of exact and near-identical groups into a quarantine "
        "folder (near-duplicate ones only with --tiers, edits only with --include-edits); a dry "
        "run unless --apply.",
        on_click="ignore",
    )


def decide(loaded: Loaded, action: str, paths: list[str], seen: dict[str, int]) -> None:
    """A button's decision, through `indexer.dedup.decisions` (the `index decide` library).

    `seen` (path → content id the page showed) travels with the click: if a file changed since
    the page was drawn, nothing is saved. The write changes the catalog, so the report is
    recomputed on this rerun.
    """
    from indexer.dedup import decisions

    try:
        if action == "keep":
            decisions.keep(loaded.settings, paths[0], seen=seen)
        elif action == "forget":
            decisions.forget(loaded.settings, paths)
        else:
            decisions.distinct(loaded.settings, paths, seen=seen)
    except Exception as exc:  # noqa: BLE001 - a read-only index, a file gone: say so
        st.toast(f"Could not save the decision: {md(exc)}", icon=":material/error:")
        return
    names = ", ".join(code(os.path.basename(p)) for p in paths[:3])
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    st.toast(f"Saved: {action} · {names}{more} (`index decide list`)")


def signature(view: CatalogView, group: Group) -> str:
    """The group's identity on the page: its tier, relation and members (paths and content ids).

    Widget keys carry it instead of the group number, which changes when a decision regroups:
    a click that reaches a later run lands on the same files, or on no widget at all.
    """
    seen = sorted((m["path"], view.ids.get(m["path"], -1)) for m in group.members)
    text = repr((group.tier, group.relation, seen)).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def _path_key(path: str) -> str:
    return hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


def group_actions(loaded: Loaded, view: CatalogView, group: Group, sig: str) -> None:
    """Keep all (a distinct decision over every member) and, once resolved, forget."""
    every = [m["path"] for m in group.members]
    seen = {p: view.ids[p] for p in every if p in view.ids}
    left, right, _ = st.columns([1, 1, 4])
    left.button(
        "Keep all",
        key=f"decide-all-{sig}",
        on_click=decide,
        args=(loaded, "distinct", every, seen),
        help="Not duplicates: these pictures are never grouped with each other again.",
    )
    if group.resolved:
        right.button(
            "Forget decisions",
            key=f"decide-forget-{sig}",
            on_click=decide,
            args=(loaded, "forget", every, seen),
        )


def member_actions(loaded: Loaded, view: CatalogView, group: Group, m: dict, sig: str) -> None:
    """Keep this (a keep decision); not a duplicate (distinct from the kept file). Each button
    carries the content id of the file shown, never a position."""
    cid, kept_cid = view.ids.get(m["path"]), view.ids.get(group.keep)
    key = f"{cid}-{_path_key(m['path'])}-{sig}"
    st.button(
        "Keep this",
        key=f"decide-keep-{key}",
        on_click=decide,
        args=(loaded, "keep", [m["path"]], {m["path"]: cid}),
        type="tertiary",
        help=f"Keep {code(m['path'])} whatever the rule says (`index decide keep`)",
    )
    if cid != kept_cid:  # byte copies are one picture
        st.button(
            "Not a duplicate",
            key=f"decide-apart-{key}",
            on_click=decide,
            args=(
                loaded,
                "distinct",
                [m["path"], group.keep],
                {m["path"]: cid, group.keep: kept_cid},
            ),
            type="tertiary",
        )


def show_group(loaded: Loaded, view: CatalogView, group: Group, edited: set[str]) -> None:
    """One group: its members' thumbnails side by side, the kept one marked; an edits group
    says its members are kept apart (not moved by the quarantine's default)."""
    sig = signature(view, group)
    with st.container(border=True, key=f"group-{group.id}"):
        resolved = f" · :blue-badge[resolved: {group.decision}]" if group.resolved else ""
        relation = {
            "edits": " · :orange-badge[edits: kept apart, not moved by default]",
            "pair": " · :blue-badge[one RAW+JPEG shot]",
        }.get(group.relation, " · copies")
        st.markdown(
            f"**{group.tier} group {group.id}**{relation} · {len(group.members)} files · "
            f"similarity {group.min_score:.4f}–{group.max_score:.4f} · keep "
            f"{code(os.path.basename(group.keep))} — {md(group.reason)}{resolved}"
        )
        group_actions(loaded, view, group, sig)
        members = sorted(group.members, key=lambda m: m["path"] != group.keep)
        for row in range(0, len(members), PER_ROW):
            cols = st.columns(PER_ROW)
            for col, m in zip(cols, members[row : row + PER_ROW], strict=False):
                cid = view.ids.get(m["path"])
                with col.container(key=f"member-{cid}-{_path_key(m['path'])}-{sig}"):
                    data = thumb(loaded, cid) if cid is not None else None
                    if data:
                        st.image(data, width="stretch")
                    mark = ":orange-badge[edit]" if m["path"] in edited else ":gray-badge[copy]"
                    mark = ":green-badge[KEEP]" if m["path"] == group.keep else mark
                    if m.get("pair"):  # one shot with its RAW/JPEG twin (indexer.dedup.pairs)
                        mark += " :blue-badge[RAW+JPEG pair]"
                    st.markdown(f"{mark} {code(os.path.basename(m['path']))}")
                    st.caption(f"{m['score']:.4f} · {describe(m)}")
                    member_actions(loaded, view, group, m, sig)


@st.cache_resource(show_spinner=False, max_entries=4)
def _summary(
    index: str, stamp: tuple[Any, ...], options: tuple[Any, ...], decode: DecodeOptions
) -> dict:
    return summarize(_report(index, stamp, options, decode).groups)


@st.cache_resource(show_spinner=False, max_entries=16)
def _selected(
    index: str,
    stamp: tuple[Any, ...],
    options: tuple[Any, ...],
    decode: DecodeOptions,
    tier: str,
    folder: str,
) -> list[Group]:
    """The groups shown for these filters (cached: a page change does not refilter)."""
    groups = _report(index, stamp, options, decode).groups
    return select(groups, None if tier == ALL else tier, None if folder == ALL else folder)


def show_summary(report: Report, summary: dict[str, TierSummary], tiers: list[str]) -> None:
    """Groups, files and the space a quarantine would reclaim per tier; thresholds in words."""
    st.write(
        f"{len(report.groups)} groups: "
        + " · ".join(f"{summary[t].groups} {t}" for t in tiers)
        + f" ({report.seconds:.2f} s)"
    )
    words = threshold_words(report.thresholds)
    rows = [
        "| tier | linked by | groups | files | copies to move | quarantine reclaims "
        "| edits kept apart |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for t in tiers:
        line = summary[t]
        rows.append(
            f"| {t} | {words[t]} | {line.groups:,} | {line.files:,} | "
            f"{line.duplicates:,} | {human_size(line.reclaim)} | {line.edits:,} |"
        )
    st.markdown("\n".join(rows))
    st.caption(
        "The quarantine script moves the non-kept copies of exact and near-identical groups "
        "(each file once); near-duplicate ones only with `--tiers exact,near-identical,"
        "near-duplicate`; edits (crops, recolours, other versions) only with `--include-edits`."
    )


def filters(view: CatalogView, summary: dict[str, TierSummary], tiers: list[str]) -> tuple:
    """Tier, folder and page size, above the groups (a change goes back to page 1)."""
    cols = st.columns([2, 4, 1])
    tier = cols[0].selectbox(
        "Tier",
        [ALL, *tiers],
        format_func=lambda t: t if t == ALL else f"{t} ({summary[t].groups:,})",
        key="dup_tier",
    )
    folder = cols[1].selectbox("Folder", [ALL, *view.folders], key="dup_folder")
    size = cols[2].selectbox("Groups a page", PAGE_SIZES, key="page_size")
    if st.session_state.get("dup_filters") != (tier, folder, size):
        st.session_state["dup_filters"] = (tier, folder, size)
        st.session_state["page"] = 1
    return tier, folder, size


def show_page(
    loaded: Loaded, view: CatalogView, groups: list[Group], size: int, every: list[Group]
) -> None:
    """One page of groups; only these groups' thumbnails are read. `every`: the report's groups
    (group n is every[n - 1]), where an edits group's contained copies are looked up."""
    if not groups:
        st.write("No groups match these filters at these thresholds.")
        return
    pages = page_count(len(groups), size)
    if st.session_state.get("page", 1) > pages:
        st.session_state["page"] = pages
    number = int(st.number_input(f"Page (of {pages:,})", 1, pages, key="page"))
    st.caption(f"groups {(number - 1) * size + 1:,}–{min(number * size, len(groups)):,} "
               f"of {len(groups):,}")  # fmt: skip
    shown = groups[(number - 1) * size : number * size]
    inner = {i: every[i - 1] for g in shown for i in g.contains if 0 < i <= len(every)}
    for group in shown:
        show_group(loaded, view, group, edits_in(group, inner))


def main() -> None:
    """The Duplicates page: options in the sidebar, summary, downloads, filters, one page.

    The report is cached per catalog state and options, so reruns and page changes do not regroup.
    """
    st.title("Duplicates")
    opened = open_index()
    if opened is None:
        return
    loaded, view = opened
    options = sidebar_options(view)
    index, decode = loaded.settings.index, DecodeOptions.from_settings(loaded.settings)
    key = (str(index.absolute()), catalog_stamp(index), options, decode)
    try:
        report = _report(*key)
    except KeepRuleError as exc:
        st.error(f"That keep rule does not parse: {md(exc)}")
        return
    except ValueError as exc:  # thresholds that contradict each other
        st.error(md(exc))
        return
    tiers = [t for t in TIERS if t != "similar" or options[2] is not None]
    summary = _summary(*key)
    show_summary(report, summary, tiers)
    downloads(report)
    tier, folder, size = filters(view, summary, tiers)
    show_page(loaded, view, _selected(*key, tier, folder), size, report.groups)


main()
