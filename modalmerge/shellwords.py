"""``shlex.split`` for the shell text Snakemake formats, fast on long quoted arguments.

A batch of the workflow's data stages (workflow/rules/batch_commands.smk) turns each
subject's formatted shell command back into its words, at every parse of the Snakefile:
3 commands per subject, each carrying a stage's settings as a quoted JSON argument.
``shlex.split`` reads character by character in Python and was more than half of that
cost (cProfile of a 100-subject no-op). The shell text a rule formats is words of plain
characters and single- or double-quoted parts, as ``shlex.quote`` writes them; this reads
those with two regular expressions and leaves any other text (a backslash, an unbalanced
quote) to ``shlex.split`` itself, so the words are always what ``shlex.split`` gives
(tests/test_shellwords.py compares them).
"""

from __future__ import annotations

import re
import shlex

__all__ = ["split"]

_WORD = re.compile(r"""(?:[^\s'"\\]+|'[^']*'|"[^"\\]*")+""")
_PART = re.compile(r"""[^\s'"\\]+|'([^']*)'|"([^"\\]*)\"""")


def split(text: str) -> list[str]:
    """The words of ``text`` as ``shlex.split(text)`` (POSIX mode, no comments) gives them."""
    if "\\" in text:
        return shlex.split(text)
    words, end = [], 0
    for match in _WORD.finditer(text):
        if text[end : match.start()].strip():  # an unbalanced quote: shlex says so
            return shlex.split(text)
        parts = _PART.finditer(match.group(0))
        words.append(
            "".join(p.group(0) if p.lastindex is None else p.group(p.lastindex) for p in parts)
        )
        end = match.end()
    if text[end:].strip():
        return shlex.split(text)
    return words
