"""Command-line interface (``mast COMMAND --help``)."""
from __future__ import annotations


def comma_names(text: str | None) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``: the names of a comma-separated argument (None -> [])."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]
