"""Generated blocks inside hand-written Markdown: find them, rewrite them, report the stale ones.

A block is delimited by two comments that only this tool writes:

    <!-- generated: NAME (from benchmarks/results/FILE; regenerate: python benchmarks/docs_tables.py) -->
    ...the rendered text...
    <!-- /generated: NAME -->

In a Jinja template (`model_card.md`) the delimiters are Jinja comments, `{# generated: NAME (...) #}` and
`{# /generated: NAME #}`, so the rendered card carries only the text between them. The opening comment is
regenerated with the block (it names the block's sources), so renaming a source file is a stale block too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from metaprompt_hf.utils import atomic_write_text

COMMAND = "python benchmarks/docs_tables.py"
_OPEN = re.compile(r"^(<!--|\{#) generated: (?P<name>[\w.-]+) .*?(-->|#\})$", re.M)


@dataclass(frozen=True)
class Block:
    """One generated block: where it lives, which result files it reads, and how it renders them."""

    name: str = field(metadata={"help": "the block's name in its delimiters"})
    doc: str = field(metadata={"help": "the Markdown file holding it, relative to the repository root"})
    sources: tuple[str, ...] = field(metadata={"help": "result files it is rendered from, repository-relative"})
    render: Callable[[Path], str] = field(metadata={"help": "repository root → the block's text"})

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[\w.-]+", self.name):
            raise ValueError(f"Block.name: {self.name!r} must be letters, digits, '_', '.' or '-'")
        if not self.sources:
            raise ValueError(f"Block {self.name!r}: sources is empty; a generated block names its result files")


def delimiters(name: str, sources: Sequence[str], jinja: bool = False) -> tuple[str, str]:
    """The opening and closing comments of block `name` (Jinja comments in a template)."""
    note = f"from {', '.join(sources)}; regenerate: {COMMAND}"
    if jinja:
        return f"{{# generated: {name} ({note}) #}}", f"{{# /generated: {name} #}}"
    return f"<!-- generated: {name} ({note}) -->", f"<!-- /generated: {name} -->"


def _span(text: str, name: str, doc: str) -> tuple[int, int, bool] | None:
    """(start of the opening comment, end of the closing one, Jinja style) of block `name`, or None if absent."""
    opened = [m for m in _OPEN.finditer(text) if m.group("name") == name]
    if not opened:
        return None
    if len(opened) > 1:
        raise ValueError(f"{doc}: block {name!r} is opened {len(opened)} times")
    start = opened[0]
    jinja = start.group(1) == "{#"
    close = f"{{# /generated: {name} #}}" if jinja else f"<!-- /generated: {name} -->"
    end = text.find(close, start.end())
    if end < 0:
        raise ValueError(f"{doc}: block {name!r} has no closing {close}")
    return start.start(), end + len(close), jinja


def blocks_in(text: str) -> list[str]:
    """Names of the generated blocks a document holds, in order."""
    return [m.group("name") for m in _OPEN.finditer(text)]


def rendered(block: Block, jinja: bool, root: Path) -> str:
    """The block with its delimiters, as it should stand in its document."""
    body = block.render(root).strip("\n")
    if jinja and re.search(r"\{[{%#]|[}%#]\}", body):
        raise ValueError(f"block {block.name!r}: the rendered text contains Jinja syntax; it goes into a template")
    opening, closing = delimiters(block.name, block.sources, jinja)
    return f"{opening}\n{body}\n{closing}"


def first_difference(old: str, new: str) -> str:
    """The first line where two texts differ, as 'line N: OLD → NEW'."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    for i in range(max(len(old_lines), len(new_lines))):
        a = old_lines[i] if i < len(old_lines) else "<end>"
        b = new_lines[i] if i < len(new_lines) else "<end>"
        if a != b:
            return f"line {i + 1} of the block: {a!r} → {b!r}"
    return "identical"


def sync(blocks: Sequence[Block], root: Path, check: bool) -> list[str]:
    """Rewrite (or with `check`, only compare) every block present in its document. Returns one problem per stale
    or broken block ('FILE: block NAME: ...'); a block whose source file is missing is a problem when its document
    holds it, and skipped otherwise (its result has not been produced yet); a block whose sources all exist is a
    problem when its document lacks it."""
    problems: list[str] = []
    known = {(b.doc, b.name) for b in blocks}
    for doc in sorted({b.doc for b in blocks}):
        path = root / doc
        text = path.read_text(encoding="utf-8")
        problems += [
            f"{doc}: block {n!r} is not a known block; known: {sorted(k for d, k in known if d == doc)}"
            for n in blocks_in(text)
            if (doc, n) not in known
        ]
        new = text
        for block in (b for b in blocks if b.doc == doc):
            span = _span(new, block.name, doc)
            missing = [s for s in block.sources if not (root / s).is_file()]
            if span is None:
                if not missing:  # a result exists whose figures the document lacks (or lost, by a hand edit)
                    opening, closing = delimiters(block.name, block.sources)
                    problems.append(
                        f"{doc}: block {block.name!r} is missing though {', '.join(block.sources)} exists; put "
                        f"{opening} and {closing} where it goes and run {COMMAND}"
                    )
                continue  # its result has not been produced yet
            if missing:
                problems.append(f"{doc}: block {block.name!r}: its source {', '.join(missing)} does not exist")
                continue
            start, end, jinja = span
            want = rendered(block, jinja, root)
            if new[start:end] != want:
                problems.append(f"{doc}: block {block.name!r} is stale: {first_difference(new[start:end], want)}")
                new = new[:start] + want + new[end:]
        if not check and new != text:
            atomic_write_text(path, new)
    return problems
