"""The README's "Which method for my data?" worked example, regenerated from the `comparison.json` that
`python -m metaprompt_hf.compare` wrote (committed under `benchmarks/results/compare_example/`); one of the blocks
`python benchmarks/docs_tables.py` keeps, and on its own:

    python benchmarks/compare_readme.py            # rewrite the block between the README's markers
    python benchmarks/compare_readme.py --check    # exit 1 when the README's block differs from the result file

To re-run the example itself: the command recorded in that file, then copy its `comparison.json`, `.md` and `.png`
into `benchmarks/results/compare_example/`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from docs_blocks import delimiters

from metaprompt_hf.compare.report import readme_block

ROOT = Path(__file__).resolve().parents[1]
RESULT = "benchmarks/results/compare_example/comparison.json"
PLOT = "benchmarks/results/compare_example/comparison.png"
NAME = "compare-example"
BEGIN, END = delimiters(NAME, (RESULT,))


def expected_block(root: Path = ROOT) -> str:
    summary = json.loads((root / RESULT).read_text(encoding="utf-8"))
    return readme_block(summary, RESULT, PLOT)


def current_block(readme: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README.md: the markers {BEGIN} / {END} are missing")
    return readme.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the README differs")
    opts = parser.parse_args(argv)
    path = ROOT / "README.md"
    readme = path.read_text(encoding="utf-8")
    block = expected_block()
    if current_block(readme) == block:
        return 0
    if opts.check:
        print(f"README.md: the worked example differs from {RESULT}; run python benchmarks/compare_readme.py")
        return 1
    head, rest = readme.split(BEGIN, 1)
    path.write_text(f"{head}{BEGIN}\n{block}\n{END}{rest.split(END, 1)[1]}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
