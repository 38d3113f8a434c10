"""index.html: one self-contained page (inline CSS, PNG figures embedded as base64 data URIs), so
it can be mailed or archived as a single file."""
from __future__ import annotations

import base64
import html
import re

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1240px;margin:2em auto;
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
.scroll{overflow-x:auto} .question{font-size:1.05em;background:#f6f8fa;border-left:4px solid #2e8b57;padding:.6em 1em}
table.summary{width:100%;font-size:.85em} table.summary td,table.summary th{text-align:left;vertical-align:top}
table.summary td:first-child{font-weight:600;width:14%} td.text,th.text{text-align:left}
"""


def _inline(text: str) -> str:
    """Escape, then render `code` spans (the only markup the sections use)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _table(caption: str, columns: list, rows: list, cls: str = "", text_columns=()) -> str:
    out = [f"<div class='scroll'><table{f' class={chr(39)}{cls}{chr(39)}' if cls else ''}>"
           f"<caption>{_inline(caption)}</caption><thead><tr>"]
    left = lambda i: " class='text'" if i in text_columns else ""  # noqa: E731
    out.append("".join(f"<th{left(i)}>{_inline(c)}</th>" for i, c in enumerate(columns)) + "</tr></thead><tbody>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td{left(i)}>{_inline(str(c))}</td>" for i, c in enumerate(r)) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


SUMMARY_KEYS = ("trick", "saves", "costs", "claim", "ours", "verdict")


def _summary(summary: dict | None) -> list[str]:
    if not summary:
        return []
    out = ["<h2 id='summary'>The question, and the summary</h2>",
           f"<p class='question'>{_inline(summary['question'])}</p>",
           _table("What each trick saves (the cost model, last section) and what it costs (measured; mean ± "
                  "standard deviation over seeds)", summary["columns"],
                  [[r[k] for k in SUMMARY_KEYS] for r in summary["rows"]], cls="summary")]
    if summary.get("size_note"):
        out.append(f"<p class='missing'>{_inline(summary['size_note'])}</p>")
    if summary["noisy"]:
        out.append("<p class='missing'>Too noisy to quote at this run's size (seed-to-seed standard deviation above "
                   "10% of the mean): " + "; ".join(f"{_inline(n['figure'])} ({n['cv'] * 100:.3g}%)"
                                                    if n["cv"] is not None else _inline(n["figure"])
                                                    for n in summary["noisy"]) + ".</p>")
    else:
        out.append("<p class='meta'>Every seed-replicated figure above varies by less than 10% of its mean (one "
                   "standard deviation) between seeds at this run's size.</p>")
    return out


def render(results: dict, figures: dict[str, bytes]) -> str:
    meta = results["meta"]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(meta['title'])}</title><style>{_CSS}</style></head><body>",
           f"<h1>{html.escape(meta['title'])}</h1>",
           f"<p class='meta'>fp8lab {html.escape(meta['version'])} · mode <code>{meta['mode']}</code> · seed "
           f"{meta['seed']} · every number on this page is in <code>results.json</code></p>",
           f"<p>{_inline(meta['intro'])}</p>"]
    out += _summary(results.get("summary"))
    out += ["<h2>Conclusions</h2>", "<ul class='toc'>"]
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
                out.append(_table(b["caption"], b["columns"], b["rows"], text_columns=b.get("text_columns", ())))
            elif b["kind"] == "figure":
                data = base64.b64encode(figures[b["file"]]).decode("ascii")
                out.append(f"<figure><img alt='{html.escape(b['caption'])}' src='data:image/png;base64,{data}'>"
                           f"<figcaption>{_inline(b['caption'])}</figcaption></figure>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
