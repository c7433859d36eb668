"""Text from other people, made safe to print on a terminal.

Names and messages come from strangers on the network. Printed raw, ``ESC[1A`` moves the cursor up, ``\\r`` and
``ESC[2K`` erase a line, a bidi override reverses what follows, U+2028 breaks a line where the reader expects
none: a message could then forge a header ("from Alice", with her fingerprint) or hide one. :func:`printable`
shows every such character as a visible escape (``\\x1b``, ``\\u202e``), so what a terminal shows is the text
and nothing else. :func:`printable_block` keeps a message's own line breaks but indents every line (and cuts long
ones to the terminal's width, since a terminal wraps them to column 0), so a reader always sees where a message
ends and the next header starts; :func:`truncate` bounds a name's share of a header line.

Machine output (``--json``) is not passed through here: JSON escapes control characters itself and stays exact.
"""

from __future__ import annotations

import unicodedata

__all__ = ["printable", "printable_block", "truncate", "columns", "is_unsafe"]

# Characters that move, erase or reorder what a terminal shows, beyond the C0/C1 controls and DEL.
_BIDI_AND_BREAKS = frozenset(
    [0x061C, 0x200E, 0x200F]  # arabic letter mark, left-to-right / right-to-left marks
    + list(range(0x202A, 0x202F))  # LRE RLE PDF LRO RLO (embeddings and overrides)
    + list(range(0x2066, 0x206A))  # LRI RLI FSI PDI (isolates)
    + [0x2028, 0x2029]  # line and paragraph separators
)


def is_unsafe(char: str) -> bool:
    """True for a character a terminal does not simply draw: C0, DEL, C1 (ESC, CSI U+009B, NEL...), bidi
    controls, line/paragraph separators, and lone surrogates (which cannot even be encoded)."""
    code = ord(char)
    if code < 0x20 or 0x7F <= code <= 0x9F or code in _BIDI_AND_BREAKS:
        return True
    return unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp")


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` on one line, every unsafe character shown as a visible escape (``\\x1b``, ``\\n``, ``\\u202e``).
    Safe text comes back unchanged."""
    text = str(text)
    if not any(is_unsafe(c) for c in text):
        return text
    return "".join(_escape(c) if is_unsafe(c) else c for c in text)


def columns(text: str) -> int:
    """How many terminal columns ``text`` may take, never fewer than it does: printable ASCII is 1, anything else
    counts 2 (wide, ambiguous and combining characters alike). Lines measured this way never wrap early."""
    return sum(1 if " " <= c <= "~" else 2 for c in text)


def _pieces(text: str) -> list[str]:
    return [_escape(c) if is_unsafe(c) else c for c in str(text)]


def truncate(text: str, max_columns: int) -> str:
    """:func:`printable` ``text``, cut to at most ``max_columns`` columns (by :func:`columns`), "…" marking a cut."""
    pieces = _pieces(text)
    if columns("".join(pieces)) <= max_columns:
        return "".join(pieces)
    out, used = [], 2  # room for the ellipsis
    for piece in pieces:
        if used + columns(piece) > max_columns:
            break
        out.append(piece)
        used += columns(piece)
    return "".join(out) + "\u2026"


def printable_block(text: str, indent: str = "    ", width: int | None = None) -> str:
    """Multi-line ``text`` for a terminal: split at its line breaks (``\\n``, ``\\r\\n``), each line made
    :func:`printable` and prefixed with ``indent``; an empty text is one indented empty line. Joined by ``\\n``.

    With ``width`` (the terminal's columns) long lines are cut into indented lines that fit, so the terminal never
    wraps one to column 0, where it could pass for a header."""
    out = []
    room = max(8, (width or 0) - columns(indent))
    for line in str(text).replace("\r\n", "\n").split("\n"):
        if width is None:
            out.append(indent + printable(line))
            continue
        chunk: list[str] = []
        used = 0
        for piece in _pieces(line):
            if chunk and used + columns(piece) > room:
                out.append(indent + "".join(chunk))
                chunk, used = [], 0
            chunk.append(piece)
            used += columns(piece)
        out.append(indent + "".join(chunk))
    return "\n".join(out)
