"""What a person sees in a notebook beyond plain prints: a boxed notice that cannot be missed, and
Markdown rendered (``show_markdown``), a long document cut at a section (``markdown_head``).

``announce(title, lines)`` shows a framed box: in a Jupyter kernel an HTML box (with the same
box as plain text for text-only viewers, papermill logs and ``nbconvert --to markdown``), and
elsewhere the plain-text box on stdout. It returns the plain text, so tests can check what it said.
"""
from __future__ import annotations

import html
import sys
import textwrap

COLORS = {"warning": ("#fff4e5", "#b35c00"), "error": ("#fdecea", "#b00020"), "info": ("#e8f0fe", "#1a56c4")}


def box_text(title: str, lines: list[str] | str, width: int = 96) -> str:
    """A framed plain-text box, lines wrapped to ``width``."""
    if isinstance(lines, str):
        lines = [lines]
    body = [w for line in lines for w in (textwrap.wrap(line, width - 4, break_on_hyphens=False) or [""])]
    inner = max([len(title)] + [len(b) for b in body])
    bar = "!" * (inner + 6)
    out = [bar, f"!! {title.upper():<{inner}} !!", "!!" + " " * (inner + 2) + "!!"]
    out += [f"!! {b:<{inner}} !!" for b in body]
    return "\n".join(out + [bar])


def in_notebook() -> bool:
    ip = sys.modules.get("IPython")
    shell = ip.get_ipython() if ip is not None and hasattr(ip, "get_ipython") else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def announce(title: str, lines: list[str] | str, kind: str = "warning") -> str:
    """Show a notice nobody can miss (see the module docstring); returns its plain text."""
    text = box_text(title, lines)
    if in_notebook():
        from IPython.display import display
        bg, fg = COLORS.get(kind, COLORS["warning"])
        items = [lines] if isinstance(lines, str) else lines
        body = "".join(f"<p style='margin:4px 0'>{html.escape(line)}</p>" for line in items)
        display({"text/html": f"<div style='border:3px solid {fg};background:{bg};color:#222;padding:8px 12px;"
                              f"margin:6px 0;border-radius:4px'><b style='color:{fg};font-size:1.1em'>"
                              f"{html.escape(title)}</b>{body}</div>",
                 "text/plain": text}, raw=True)
    else:
        print(text, flush=True)
    return text


def markdown_head(text: str, max_chars: int = 3000, path=None) -> str:
    """A Markdown document whole when it is at most ``max_chars`` long; else its first sections (cut
    before a ``## `` heading, never inside a sentence or a table) that fit, and a last line naming
    the sections left out and the file (``path``) that holds them all."""
    if len(text) <= max_chars:
        return text
    parts = text.split("\n## ")
    kept = parts[0]
    i = 1
    while i < len(parts) and len(kept) + len(parts[i]) + 4 <= max_chars:
        kept += "\n## " + parts[i]
        i += 1
    rest = [p.split("\n", 1)[0].strip() for p in parts[i:]]
    where = f": the whole of it is in `{path}`" if path else ""
    return kept.rstrip() + f"\n\n*Left out here: {'; '.join(rest)}{where}.*\n"


def show_markdown(text: str) -> None:
    """Markdown rendered in a notebook (headings, tables), printed as it is elsewhere."""
    if in_notebook():
        from IPython.display import Markdown, display
        display(Markdown(text))
    else:
        print(text, flush=True)
