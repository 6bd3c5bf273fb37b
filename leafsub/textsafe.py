"""Text that came from a submission, made safe to print on a terminal.

A submission's messages (its exception text, what it printed, the names it gave) reach
the report. On a terminal, control characters in them are commands: an ANSI escape
sequence can paint a fake green PASS, set the window title, move the cursor over
leafsub's own lines or clear the screen. :func:`escape` shows every control character
as a visible escape (``\\x1b``) instead: C0 controls (but the newline and the tab),
DEL, the C1 controls, and the Unicode controls that reorder or hide text (bidirectional
overrides and isolates, zero-width characters, the line and paragraph separators).
The HTML report escapes its text on its own.
"""

import re

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069"
                      "\ufeff]")


def _show(match):
    code = ord(match.group())
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code


def escape(text):
    """``text`` with its control characters shown as escapes (newline and tab kept)."""
    if not isinstance(text, str):
        text = str(text)
    return _CONTROL.sub(_show, text)
