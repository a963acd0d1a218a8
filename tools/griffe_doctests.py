"""A Griffe extension for the API reference: doctest sessions as code blocks.

Docstrings give their examples as ``>>>`` sessions after an ``Example:`` line.
Markdown would run such a session into one paragraph, and read indexing such
as ``x[a][b]`` as a link. This extension fences every session (its ``>>>``
and ``...`` lines and the output lines up to the next blank line) as a
``pycon`` code block before mkdocstrings renders the docstring. `mkdocs.yml`
loads it.
"""

import griffe

FENCE = "```"


def fence_doctests(text: str) -> str:
    """`text` with every doctest session wrapped in a fenced ``pycon`` block.

    Sessions already inside a fenced block are left alone.
    """
    lines = text.splitlines()
    fenced: list[str] = []
    in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(FENCE):
            in_fence = not in_fence
        elif not in_fence and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            fenced.append(f"{indent}{FENCE}pycon")
            while i < len(lines) and lines[i].strip():
                fenced.append(lines[i])
                i += 1
            fenced.append(f"{indent}{FENCE}")
            continue
        fenced.append(line)
        i += 1
    return "\n".join(fenced)


class DoctestBlocks(griffe.Extension):
    """Fences the doctest sessions of every docstring Griffe loads."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
