"""report.md: the same blocks as the HTML page, as GitHub-flavoured Markdown (figures linked as
the PNG files written next to it)."""
from __future__ import annotations


def _cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def render(results: dict) -> str:
    meta = results["meta"]
    out = [f"# {meta['title']}", "",
           f"fp8lab {meta['version']} · mode `{meta['mode']}` · seed {meta['seed']} · "
           f"regenerate with `fp8lab report --seed {meta['seed']}{' --' + meta['mode'] if meta['mode'] != 'default' else ''}`",
           "", meta["intro"], ""]
    sm = results.get("summary")
    if sm:
        out += ["## The question, and the summary", "", sm["question"], "",
                "| " + " | ".join(_cell(c) for c in sm["columns"]) + " |",
                "|" + "|".join(" --- " for _ in sm["columns"]) + "|"]
        out += ["| " + " | ".join(_cell(r[k]) for k in ("trick", "saves", "costs", "claim", "ours", "verdict")) + " |"
                for r in sm["rows"]]
        out.append("")
        if sm.get("size_note"):
            out += [f"**{sm['size_note']}**", ""]
        if sm["noisy"]:
            out += ["**Too noisy to quote at this run's size** (seed-to-seed standard deviation above 10% of the "
                    "mean): " + "; ".join(n["figure"] for n in sm["noisy"]) + ".", ""]
    out += ["## Conclusions", ""]
    for s in results["sections"]:
        out.append(f"- **{s['number']}. {s['title']}** — {s['conclusion']}")
    out.append("")
    for s in results["sections"]:
        out += [f"## {s['number']}. {s['title']}", "", f"> {s['conclusion']}", ""]
        for b in s["blocks"]:
            if b["kind"] == "para":
                out += [b["text"], ""]
            elif b["kind"] == "unavailable":
                out += [f"**{b['text']}**", ""]
            elif b["kind"] == "table":
                out += [f"*{b['caption']}*", "",
                        "| " + " | ".join(_cell(c) for c in b["columns"]) + " |",
                        "|" + "|".join(" --- " for _ in b["columns"]) + "|"]
                out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in b["rows"]]
                out.append("")
            elif b["kind"] == "figure":
                out += [f"![{b['caption']}]({b['file']})", "", f"*{b['caption']}*", ""]
    return "\n".join(out) + "\n"
