"""index.html: one self-contained page (inline CSS, PNG figures embedded as base64 data URIs), so
it can be mailed or archived as a single file."""
from __future__ import annotations

import base64
import html
import re

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1.2em;color:#1d232b;line-height:1.5}
h1{font-size:1.7em;margin-bottom:.2em} h2{border-bottom:2px solid #d5dbe3;padding-bottom:.2em;margin-top:2em}
.meta{color:#5a6470;font-size:.9em} code{background:#f0f2f5;padding:0 .25em;border-radius:3px}
.conclusion{background:#eef5ff;border-left:4px solid #2f6fdb;padding:.6em 1em;font-size:1.05em;margin:1em 0}
.status{display:inline-block;font-size:.7em;padding:.1em .5em;border-radius:3px;margin-left:.6em;
vertical-align:middle;color:#fff} .status.ok{background:#2e8b57} .status.partial{background:#c98a00}
.status.unavailable{background:#8a8f96}
.missing{background:#fff6e0;border-left:4px solid #c98a00;padding:.4em 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.88em} caption{text-align:left;
font-style:italic;color:#3c4550;padding-bottom:.3em} th,td{border:1px solid #d5dbe3;padding:.25em .6em;
text-align:right} th{background:#f4f6f9} td:first-child,th:first-child{text-align:left}
tbody tr:nth-child(even){background:#fafbfc}
figure{margin:1em 0 2em} figure img{max-width:100%;border:1px solid #e3e7ec}
figcaption{font-size:.88em;color:#3c4550} ul.toc li{margin:.3em 0}
"""


def _inline(text: str) -> str:
    """Escape, then render `code` spans (the only markup the sections use)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def render(results: dict, figures: dict[str, bytes]) -> str:
    meta = results["meta"]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(meta['title'])}</title><style>{_CSS}</style></head><body>",
           f"<h1>{html.escape(meta['title'])}</h1>",
           f"<p class='meta'>fp8lab {html.escape(meta['version'])} · mode <code>{meta['mode']}</code> · seed "
           f"{meta['seed']} · every number on this page is in <code>results.json</code></p>",
           f"<p>{_inline(meta['intro'])}</p>", "<h2>Conclusions</h2>", "<ul class='toc'>"]
    for s in results["sections"]:
        out.append(f"<li><a href='#{s['id']}'><b>{s['number']}. {html.escape(s['title'])}</b></a> — "
                   f"{_inline(s['conclusion'])}</li>")
    out.append("</ul>")
    for s in results["sections"]:
        out.append(f"<section id='{s['id']}'><h2>{s['number']}. {html.escape(s['title'])}"
                   f"<span class='status {s['status']}'>{s['status']}</span></h2>")
        out.append(f"<div class='conclusion'>{_inline(s['conclusion'])}</div>")
        for b in s["blocks"]:
            if b["kind"] == "para":
                out.append(f"<p>{_inline(b['text'])}</p>")
            elif b["kind"] == "unavailable":
                out.append(f"<p class='missing'>{_inline(b['text'])}</p>")
            elif b["kind"] == "table":
                out.append(f"<table><caption>{_inline(b['caption'])}</caption><thead><tr>")
                out.append("".join(f"<th>{_inline(c)}</th>" for c in b["columns"]) + "</tr></thead><tbody>")
                for r in b["rows"]:
                    out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>")
                out.append("</tbody></table>")
            elif b["kind"] == "figure":
                data = base64.b64encode(figures[b["file"]]).decode("ascii")
                out.append(f"<figure><img alt='{html.escape(b['caption'])}' src='data:image/png;base64,{data}'>"
                           f"<figcaption>{_inline(b['caption'])}</figcaption></figure>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
