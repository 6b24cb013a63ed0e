"""Text from a submission, made inert for the terminal or the file it is shown in.

A student's exception message, printed output or file name reaches the instructor's terminal
(the grade table, grade-class's progress), Gradescope's page and the feedback files. Escape
sequences in it could redraw a terminal or hide lines, and bidirectional marks could reorder
what is read, so every such text goes through `printable` before it is shown; markdown, HTML
and CSV have their own escaping on top, where they are written (labs/instructor/).
"""

from __future__ import annotations

import re
import unicodedata

# whole escape sequences (CSI, OSC, two-character ESC codes, 8-bit CSI), not only their first byte
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?|\x9b[0-?]*[ -/]*[@-~]")


# Letters and symbols that draw nothing (Hangul fillers, the blank Braille pattern): text made of
# them looks blank, or like spaces, and could pad a message into what looks like a line of ours
_BLANK = dict.fromkeys(map(ord, "\u115f\u1160\u3164\uffa0\u2800"))


def printable(text: object, newlines: bool = True) -> str:
    """`text` without escape sequences, control and format characters, or characters that draw nothing.

    `\\r\\n` and a lone `\\r` become `\\n` (a carriage return would overwrite the line before it);
    newlines and tabs are kept, or with `newlines=False` every run of them becomes a space (a
    progress line, a table cell).
    """
    text = _ANSI.sub("", str(text)).replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(c for c in text if c in "\n\t" or not unicodedata.category(c).startswith("C")).translate(_BLANK)
    return text if newlines else re.sub(r"[\n\t]+", " ", text)
