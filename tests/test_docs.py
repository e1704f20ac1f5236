"""The project's own documents: every `docs/<file>.md §N` cited in the code names a section that exists, and every
link label used in those documents is defined."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CODE_DIRS = ("src", "examples", "spaces", "benchmarks", "tests")
CITATION = re.compile(r"docs/(method|architecture)\.md\s*((?:§\s*[0-9][0-9.]*[0-9]?(?:\s*(?:,|-|–|and)\s*)?)+)")


def _sections(doc: Path) -> set[str]:
    """Section numbers of a document's headings: '## 3. Title' → '3', '### 3.2 Title' → '3.2'."""
    found = set()
    for line in doc.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#{2,4}\s+([0-9]+(?:\.[0-9]+)*)\.?\s", line)
        if m:
            found.add(m.group(1))
    return found


def _citations() -> list[tuple[str, str, str]]:
    """(file:line, document, section) for every citation of a docs/ section in the code."""
    out = []
    for d in CODE_DIRS:
        for path in sorted((ROOT / d).rglob("*")):
            if path.suffix not in (".py", ".md", ".yaml", ".yml") or not path.is_file():
                continue
            for no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                for m in CITATION.finditer(line):
                    for sec in re.findall(r"§\s*([0-9][0-9.]*[0-9]|[0-9])", m.group(2)):
                        out.append((f"{path.relative_to(ROOT)}:{no}", m.group(1), sec))
    return out


def test_documents_exist_with_numbered_sections() -> None:
    method = _sections(DOCS / "method.md")
    # The numbering the code cites (it mirrors the developer spec the package was built from).
    for sec in ("1.1", "1.2", "1.3", "1.4", "1.5", "2", "3", "3.1", "3.2", "3.3", "4", "5", "6.1", "6.2", "6.3"):
        assert sec in method, f"docs/method.md lacks §{sec}"
    for sec in ("7", "8", "9"):
        assert sec in method, f"docs/method.md lacks §{sec}"
    assert {"4.1", "4.2", "4.3"} <= _sections(DOCS / "architecture.md")


def test_every_cited_section_exists() -> None:
    sections = {name: _sections(DOCS / f"{name}.md") for name in ("method", "architecture")}
    citations = _citations()
    assert citations, "expected the code to cite docs/method.md"
    missing = [f"{where}: docs/{doc}.md §{sec}" for where, doc, sec in citations if sec not in sections[doc]]
    assert not missing, "citations of sections that do not exist:\n" + "\n".join(missing)


def test_every_cited_departure_exists() -> None:
    """Comments cite the departures of docs/method.md §3.3 as D1, D2, ...; each must be a row of its table."""
    defined = set(re.findall(r"^\| (D[0-9]+) \|", (DOCS / "method.md").read_text(encoding="utf-8"), flags=re.M))
    assert {"D1", "D2", "D3"} <= defined
    cited = []
    for d in ("src", "examples", "benchmarks", "spaces"):
        for path in sorted((ROOT / d).rglob("*.py")):
            for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                cited += [(f"{path.relative_to(ROOT)}:{no}", m) for m in re.findall(r"\b(D[0-9]{1,2})\b", line)]
    assert cited, "expected the code to cite departures"
    missing = [f"{where}: {d}" for where, d in cited if d not in defined]
    assert not missing, "departures cited but not in docs/method.md §3.3:\n" + "\n".join(missing)


@pytest.mark.parametrize("name", ["method.md", "architecture.md"])
def test_reference_links_are_defined(name: str) -> None:
    text = (DOCS / name).read_text(encoding="utf-8")
    defined = set(re.findall(r"^\[([^\]]+)\]:\s*\S+", text, flags=re.M))
    used = set(re.findall(r"\]\[([^\]]+)\]", text))
    assert not used - defined, f"{name}: undefined link labels {sorted(used - defined)}"
    assert not defined - used, f"{name}: unused link definitions {sorted(defined - used)}"


def test_reference_code_links_are_pinned() -> None:
    """Line anchors only mean something at a fixed commit."""
    text = (DOCS / "method.md").read_text(encoding="utf-8")
    for url in re.findall(r"https://github\.com/[^\s)]+#L\d+", text):
        assert re.search(r"/blob/[0-9a-f]{40}/", url), url


def test_every_file_the_architecture_names_exists() -> None:
    """The module map and the extension recipes name real files (placeholders such as `<family>.py` aside), and the
    from-outside recipes point at the toy plugin that tests/extensions/ trains with."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:src|tests|examples|benchmarks|spaces|docs)/[^`<>*\s]+?\.(?:py|md|yaml))`", text))
    assert len(named) > 10
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"
    for module in ("methods", "protocols", "backbones", "modeling", "adapters", "hub", "inputs", "data", "training"):
        assert (ROOT / "src" / "metaprompt_hf" / module).is_dir() and f"{module}/" in text, module
    assert "tests/extensions/toy_plugin.py" in named
