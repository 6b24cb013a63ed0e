"""Text from a submission, made inert for the terminal it is printed on.

A student's exception message, printed output or file name reaches the instructor's terminal
(the grade table, grade-class's progress), Gradescope's page and the feedback files. Escape
sequences in it could redraw a terminal or hide lines, so every such text goes through
`printable` before it is shown; markdown, HTML and CSV have their own escaping where they are
written (labs/instructor/).
"""

from __future__ import annotations

import unicodedata


def printable(text: str) -> str:
    """`text` without control characters (ANSI escapes, carriage returns, backspaces, C1 codes);
    newlines and tabs are kept, and the rest of an escape sequence stays as harmless text."""
    return "".join(c for c in str(text) if c in "\n\t" or not unicodedata.category(c).startswith("C"))
