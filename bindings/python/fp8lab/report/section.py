"""A report section as data: an ordered list of blocks (paragraphs, tables, figures), its opening
conclusion, its raw numbers, and a status. The Markdown and HTML writers only render this."""
from __future__ import annotations

STATUSES = ("ok", "partial", "unavailable")


class Section:
    def __init__(self, sid: str, number: int, title: str):
        self.id = sid
        self.number = number
        self.title = title
        self.status = "ok"
        self.conclusion = ""
        self.blocks: list[dict] = []
        self.data: dict = {}
        self.figures: dict[str, bytes] = {}  # file name -> PNG bytes (kept out of results.json)
        self.unavailable: list[str] = []

    def para(self, text: str) -> None:
        self.blocks.append({"kind": "para", "text": text})

    def table(self, caption: str, columns: list[str], rows: list[list], text_columns: list[int] | None = None) -> None:
        """text_columns: indices of columns holding prose (set flush left; numbers stay flush right)."""
        block = {"kind": "table", "caption": caption, "columns": list(columns),
                 "rows": [[str(c) for c in r] for r in rows]}
        if text_columns:
            block["text_columns"] = list(text_columns)
        self.blocks.append(block)

    def figure(self, name: str, plot, caption: str) -> None:
        """plot: a plots.Plot (PNG bytes and what the figure was inspected to hold before saving)."""
        fname = f"{self.id}_{name}.png"
        self.figures[fname] = plot.png
        self.blocks.append({"kind": "figure", "file": fname, "caption": caption, "inspected": plot.info})

    def not_available(self, what: str, missing: list[str]) -> None:
        """Record, and say on the page, that a part could not be measured in this build."""
        self.unavailable.append(what)
        self.status = "partial" if self.status == "ok" else self.status
        self.blocks.append({"kind": "unavailable",
                            "text": f"{what}: not available in this build (missing fp8lab API: "
                                    f"{', '.join(missing)})."})

    def to_json(self) -> dict:
        return {"id": self.id, "number": self.number, "title": self.title, "status": self.status,
                "conclusion": self.conclusion, "blocks": self.blocks, "data": self.data,
                "unavailable": self.unavailable}
