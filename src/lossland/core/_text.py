"""Text from outside (a file, a user, a file name) made safe to show: the one escaping rule.

A terminal acts on control characters: ESC starts sequences that clear the screen, move the
cursor or write the clipboard (OSC 52), C1 controls (U+0080..U+009F) do the same on some
terminals, ``\\r`` returns to the start of the line so later text overwrites earlier text, and
bidi overrides (U+202E) reverse what follows. :func:`printable` replaces every such character by
a visible escape (``\\x1b``, ``\\r``, ``\\u202e``) and keeps ordinary Unicode (×, θ, ±, é, CJK)
as it is, so a value reads the same as before unless it tried to act on the terminal.

Escaped: Unicode categories Cc (C0, DEL, C1), Cf (format: bidi controls, zero-width characters,
the BOM), Zl and Zp (line and paragraph separators), Cs (lone surrogates: a file name that is
not UTF-8, decoded with ``surrogateescape``, shows its raw bytes as ``\\xff``) and Co (private
use: no glyph, and lossland marks API arguments in messages with two of them).
"""

from __future__ import annotations

import unicodedata

__all__ = ["printable"]

_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: object, *, newlines: bool = False) -> str:
    """``str(text)`` with every control, format, separator, surrogate and private-use character
    shown as an escape. ``newlines=True`` keeps ``\\n`` (text lossland composed of several
    lines); otherwise a value stays on one line, so it cannot start a line of its own."""
    text = text if isinstance(text, str) else str(text)
    if text.isprintable():  # the common case: nothing to escape
        return text
    return "".join(_shown(c, newlines) for c in text)


def _shown(c: str, newlines: bool) -> str:
    if (c == "\n" and newlines) or unicodedata.category(c) not in _UNSAFE:
        return c
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
