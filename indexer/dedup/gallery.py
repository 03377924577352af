"""The HTML report: one self-contained file that stays usable with 100,000 groups.

The groups travel as one JSON data block; a little vanilla JS renders one page at a time (page
size, page buttons, tier and folder filters), building elements with `textContent` so no name
is ever parsed as HTML. Thumbnails are inlined (data URIs, shared when identical) only for the
first `thumb_groups` groups: 100k groups × their members would weigh gigabytes.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any

from indexer.dedup.review import edits_in, summarize, threshold_words
from indexer.files import human_size

THUMB_GROUPS = 2000  # groups with inlined thumbnails (measured sizes: docs/benchmarks.md)
FIELDS = (
    "path", "size", "width", "height", "format", "taken_at", "score", "protected", "pair", "edit",
    "thumb",
)  # fmt: skip

_CSS = """
body{font:14px system-ui,sans-serif;margin:1.5em;background:#f6f6f6;color:#222}
table.summary td,table.summary th{padding:2px 10px;text-align:left}
table.summary td.n{text-align:right}
#controls{position:sticky;top:0;background:#f6f6f6;padding:.5em 0;border-bottom:1px solid #ccc}
#controls label{margin-right:1em}
.group{background:#fff;border:1px solid #ddd;border-radius:8px;padding:.8em 1em;margin:1em 0}
.head{font-size:13px;color:#444}.tier{font-weight:bold;text-transform:uppercase}
.members{display:flex;flex-wrap:wrap;gap:12px;margin-top:.6em}
.member{width:210px;font-size:12px;border:3px solid transparent;border-radius:6px;padding:4px}
.member img{max-width:200px;max-height:200px;display:block;margin:auto}
.member.kept{border-color:#2a9d4b;background:#eef8f0}
.badge{display:inline-block;font-weight:bold;font-size:11px;padding:0 5px;border-radius:3px}
.kept .badge.keep{background:#2a9d4b;color:#fff}.badge.dup{background:#bbb;color:#fff}
.resolved{color:#2a6f9d;font-weight:bold}.edits{color:#9d6a2a;font-weight:bold}
.badge.protected{background:#2a6f9d;color:#fff}
.nopreview{width:200px;height:60px;background:#eee;color:#888;display:flex;
align-items:center;justify-content:center}
code{word-break:break-all;font-size:11px}
"""

_JS = r"""
(function(){
const D=JSON.parse(document.getElementById('report-data').textContent);
const F=D.fields, P={};F.forEach((f,i)=>P[f]=i);
const $=id=>document.getElementById(id);
let shown=D.groups, pageNo=1;
function el(tag,cls,text){const e=document.createElement(tag);if(cls)e.className=cls;
 if(text!==undefined)e.textContent=text;return e;}
function size(n){if(n==null)return '—';let v=n;for(const u of ['bytes','KB','MB']){
 if(v<1024)return u==='bytes'?v.toFixed(0)+' '+u:v.toFixed(1)+' '+u;v/=1024;}
 return v.toFixed(1)+' GB';}
function inFolder(p,f){f=f.replace(/\/+$/,'');return !f||p===f||p.startsWith(f+'/');}
function filter(){const t=$('tier').value,f=$('folder').value.trim();
 shown=D.groups.filter(g=>(!t||g[1]===t)&&(!f||g[7].some(m=>inFolder(m[P.path],f))));
 pageNo=1;render();}
function member(g,m){const kept=m[P.path]===g[2];
 const d=el('div','member'+(kept?' kept':''));d.dataset.kept=String(kept);
 const t=m[P.thumb];if(t!==null&&t>=0){const i=el('img');i.src=D.thumbs[t];
  i.alt=m[P.path].split('/').pop();d.append(i);}
 else d.append(el('div','nopreview',t===-1?'no preview (see note)':'no preview'));
 d.append(el('span',kept?'badge keep':'badge dup',kept?'KEEP':m[P.edit]?'edit':'copy'));
 if(m[P.pair])d.append(' ',el('span','badge protected','RAW+JPEG pair'));
 if(m[P.protected])d.append(' ',el('span','badge protected','protected'));
 d.append(el('br'),el('code',null,m[P.path]),el('br'),
  document.createTextNode(m[P.width]+'×'+m[P.height]+' · '+m[P.format]+' · '+size(m[P.size])),
  el('br'),document.createTextNode((m[P.taken_at]||'no date taken')+' · score '+
  m[P.score].toFixed(4)));
 return d;}
function group(g){const s=el('section','group');s.id='g'+g[0];s.dataset.tier=g[1];
 const h=el('div','head');h.append(el('span','tier',g[1]),' · '+(g[9]||'copies')+
  ' · group #'+g[0]+' · '+g[7].length+
  ' files · similarity '+g[4].toFixed(4)+'–'+g[5].toFixed(4)+' · '+D.words[g[1]]);
 if(g[6].length)h.append(' · contains '+g[6].map(c=>'#'+c).join(', '));
 if(g[8])h.append(' · ',el('span','resolved','resolved: your decision ('+g[8]+')'));
 if(g[9]==='edits')h.append(' · ',el('span','edits','edits of one picture, side by side: '+
  'the quarantine leaves them unless run with --include-edits'));
 const k=el('div');k.append('keep ',el('code',null,g[2]),': '+g[3]);
 const ms=el('div','members');
 [...g[7]].sort((a,b)=>(a[P.path]!==g[2])-(b[P.path]!==g[2])).forEach(m=>ms.append(member(g,m)));
 s.append(h,k,ms);return s;}
function render(){const size=+$('size').value,pages=Math.max(1,Math.ceil(shown.length/size));
 pageNo=Math.min(Math.max(1,pageNo),pages);
 const box=$('groups');box.replaceChildren(
  ...shown.slice((pageNo-1)*size,pageNo*size).map(group));
 if(!shown.length)box.append(el('p',null,'No groups match these filters.'));
 $('page').value=pageNo;$('page').max=pages;$('pages').textContent='of '+pages+' ('+
  shown.length+' groups)';$('prev').disabled=pageNo<=1;$('next').disabled=pageNo>=pages;}
$('tier').onchange=filter;$('folder').onchange=filter;$('size').onchange=render;
$('prev').onclick=()=>{pageNo--;render();window.scrollTo(0,0);};
$('next').onclick=()=>{pageNo++;render();window.scrollTo(0,0);};
$('page').onchange=()=>{pageNo=parseInt($('page').value)||1;render();};
render();
})();
"""


def _data(report: dict[str, Any], uris: dict[str, str], thumb_groups: int) -> str:
    """The groups as compact JSON arrays (field names once) and each distinct thumbnail once."""
    index: dict[str, int] = {}
    thumbs: list[str] = []
    rows = []
    by_id = {g["id"]: g for g in report["groups"]}
    for n, g in enumerate(report["groups"]):
        members, edited = [], edits_in(g, by_id)
        for m in g["members"]:
            uri = uris.get(m["path"]) if n < thumb_groups else None
            if uri is not None and uri not in index:
                index[uri] = len(thumbs)
                thumbs.append(uri)
            row = [m.get(f) for f in FIELDS[:-1]]
            row[FIELDS.index("score")] = float(m.get("score") or 0.0)
            row[FIELDS.index("edit")] = m["path"] in edited
            thumb = -1 if n >= thumb_groups else index.get(uri) if uri is not None else None
            members.append([*row, thumb])  # -1: beyond the groups with inlined thumbnails
        rows.append(
            [g["id"], g["tier"], g["keep"], g["reason"], g["min_score"], g["max_score"],
             g.get("contains") or [], members, g.get("decision") if g.get("resolved") else None,
             g.get("relation")]
        )  # fmt: skip
    data = {
        "fields": FIELDS,
        "groups": rows,
        "thumbs": thumbs,
        "words": threshold_words(report.get("thresholds") or {}),
    }
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # inside <script>: no "</script>", no "<!--"; JSON.parse reads the escapes back
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _summary(report: dict[str, Any]) -> str:
    """The per-tier table: groups, files, non-kept files and the space a quarantine reclaims."""
    esc = html.escape
    words = threshold_words(report.get("thresholds") or {})
    rows = [
        "<tr><th>tier</th><th>link</th><th>groups</th><th>files</th><th>copies to move</th>"
        "<th>space a quarantine reclaims</th><th>edits kept apart</th></tr>"
    ]
    for line in summarize(report["groups"]).values():
        rows.append(
            f"<tr data-tier='{esc(line.tier)}'><th>{esc(line.tier)}</th>"
            f"<td>{esc(words[line.tier])}</td><td class='n'>{line.groups:,}</td>"
            f"<td class='n'>{line.files:,}</td><td class='n'>{line.duplicates:,}</td>"
            f"<td class='n'>{esc(human_size(line.reclaim))}</td>"
            f"<td class='n'>{line.edits:,}</td></tr>"
        )
    return f"<table class='summary'>{''.join(rows)}</table>"


def _controls(report: dict[str, Any]) -> str:
    counts = summarize(report["groups"])
    tiers = "".join(
        f"<option value='{t}'>{t} ({s.groups:,})</option>" for t, s in counts.items() if s.groups
    )
    sizes = "".join(f"<option{' selected' if n == 20 else ''}>{n}</option>" for n in (20, 50, 100))
    return (
        "<div id='controls'><label>Tier <select id='tier'><option value=''>all</option>"
        f"{tiers}</select></label><label>Folder <input id='folder' size='40' "
        "placeholder='/photos/2024 (path prefix)'></label><label>Groups a page "
        f"<select id='size'>{sizes}</select></label><button id='prev'>◀ Previous</button> "
        "<label>Page <input id='page' type='number' min='1' value='1' style='width:6em'> "
        "<span id='pages'></span></label> <button id='next'>Next ▶</button></div>"
    )


def to_html(
    report: dict[str, Any],
    thumbs: dict[str, bytes | None] | None = None,
    thumb_groups: int = THUMB_GROUPS,
) -> str:
    """One self-contained HTML file: summary, filters, pages; thumbnails for the first groups.

    `thumbs` maps a path to its JPEG thumbnail (None: no preview); without it, none are shown.
    """
    esc = html.escape
    groups = report["groups"]
    uris = {
        p: "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
        for p, data in (thumbs or {}).items()
        if data
    }
    note = ""
    if len(groups) > thumb_groups:
        note = (
            f"<p class='note'>Thumbnails are inlined for the first {thumb_groups:,} groups; the "
            f"other {len(groups) - thumb_groups:,} are listed without previews to keep this "
            "file small (the Duplicates page of <code>index serve</code> shows them all).</p>"
        )
    return "".join(
        [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            "<meta name='viewport' content='width=device-width'>",
            f"<title>Duplicates · {len(groups):,} groups</title><style>{_CSS}</style></head>",
            f"<body><h1>Duplicates: {len(groups):,} groups</h1>{_summary(report)}",
            f"<p>Index <code>{esc(str(report.get('index')))}</code> · generated "
            f"{esc(str(report.get('generated_at')))}</p>{note}",
            "<p>A picture pair belongs to the strongest tier that links it; a weaker group "
            "names the stronger groups it contains. The kept file is framed in green and marked "
            "KEEP. <b>copies</b> hold the same pixels (re-saves, resizes, format changes); "
            "<b>edits</b> are the same picture changed on purpose (crop, colour, tone), shown "
            "side by side. The quarantine script moves the copies of exact and near-identical "
            "groups (the counts above) and never an edit unless told to.</p>",
            "<noscript>This report needs JavaScript to show its groups.</noscript>",
            _controls(report),
            "<div id='groups'></div>",
            "<script type='application/json' id='report-data'>",
            _data(report, uris, thumb_groups),
            f"</script><script>{_JS}</script></body></html>",
        ]
    )
