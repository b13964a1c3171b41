"""Program text is data: what a program prints or raises, made safe to show on a terminal.

``safe_text`` replaces control characters (ANSI escapes, carriage returns, bells, NULs, lone
surrogates...) with visible ``\\xNN``-style escapes and cuts the text; ``rich_text`` wraps it in a
``rich.text.Text``, which rich never parses as markup, so ``[red]`` or ``[link=...]`` in an error
message is shown as written.

>>> safe_text("\\x1b[31mred[/red]\\r\\n", 100)
'\\\\x1b[31mred[/red]\\\\r\\\\n'
"""

from __future__ import annotations

import unicodedata
from typing import Any


def _visible(ch: str) -> str:
    if ch == " " or ch.isprintable():
        return ch
    cat = unicodedata.category(ch)
    if cat.startswith("Z") or cat == "Mn":  # non-ASCII spaces and combining marks show as themselves
        return ch
    return repr(ch)[1:-1] if cat != "Cs" else f"\\u{ord(ch):04x}"


def safe_text(text: str, limit: int = 2000) -> str:
    """``text`` with every non-printable character escaped, at most ``limit`` characters (plus "...")."""
    cut = text[:limit]
    shown = cut if cut.isprintable() else "".join(map(_visible, cut))
    return shown + ("..." if len(text) > limit else "")


def rich_text(text: str, limit: int = 2000, style: str = "") -> Any:
    """A ``rich.text.Text`` of ``safe_text(text)``: printed literally, never as markup."""
    from rich.text import Text

    return Text(safe_text(text, limit), style=style)
