"""The Markdown subset the regression report writes, rendered as one self-contained HTML page."""
from __future__ import annotations

import html
import re


def markdown_to_html(md: str, title: str = "") -> str:
    """Renders the Markdown subset of the diff report: headings, bullet lists, pipe tables,
    paragraphs, **bold** and `code`."""
    def inline(text: str) -> str:
        t = html.escape(text)
        t = re.sub(r"`([^`]*)`", r"<code>\1</code>", t)
        return re.sub(r"\*\*([^*]*)\*\*", r"<strong>\1</strong>", t)

    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            out.append("<ul>")
            while i < len(lines) and lines[i].startswith("- "):
                out.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            out.append("</ul>")
            continue
        elif " | " in line and i + 1 < len(lines) and set(lines[i + 1].replace(" ", "")) <= set("-|"):
            head = [c.strip() for c in line.split("|")]
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>")
            i += 2
            while i < len(lines) and " | " in lines[i]:
                out.append("<tr>" + "".join(f"<td>{inline(c.strip())}</td>" for c in lines[i].split("|")) + "</tr>")
                i += 1
            out.append("</table>")
            continue
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
        i += 1
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #999;padding:2px 8px}code{background:#eee}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")
