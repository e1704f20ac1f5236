"""Command-line tools refuse bad input by name, before writing anything.

Each table row is one input and its expected outcome: `Works` (a correct result) or `Refused` (exit status 2 with
a message matching the pattern). Adding a case is one line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import dataclass

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Works:
    """Correct result: the command exits 0 and the report aggregates `n_entries` entries."""

    n_entries: int


@dataclass(frozen=True)
class Refused:
    """Clear error: exit status 2, stderr matches `pattern`, and no report is written."""

    pattern: str


def _evaluate_script():
    spec = importlib.util.spec_from_file_location("evaluate_runs", os.path.join(ROOT, "examples", "evaluate_runs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


B2N = {"protocol": "base2new", "method": "m", "dataset": "d", "seed": 1, "base": 80.0, "new": 60.0, "hm": 68.57}
DG = {"protocol": "dg", "method": "m", "dataset": "d", "target_domain": "t", "seed": 1, "accuracy": 50.0}
MISSING = object()  # no results.json in the run folder
NO_FOLDER = object()  # the run folder itself does not exist

# (case, results.json text or MISSING / NO_FOLDER, expected)
RUNS: list[tuple[str, object, Works | Refused]] = [
    ("base-to-new entry", json.dumps([B2N]), Works(1)),
    ("DG entry", json.dumps([DG]), Works(1)),
    ("a single object", json.dumps(B2N), Works(1)),
    ("both protocols", json.dumps([B2N, DG]), Works(2)),
    ("no such folder", NO_FOLDER, Refused(r"run1: no such run folder")),
    ("no results.json", MISSING, Refused(r"run1: no results.json")),
    ("truncated JSON", json.dumps([B2N])[:30], Refused(r"run1/results.json: not valid JSON")),
    ("not UTF-8", b"\xff\xfe[{", Refused(r"run1/results.json: .*codec can't decode")),
    ("bare NaN", json.dumps([B2N]).replace("80.0", "NaN"), Refused(r"run1/results.json: entry 0: 'base' must be a finite number.*nan")),
    ("Infinity", json.dumps([DG]).replace("50.0", "Infinity"), Refused(r"'accuracy' must be a finite number.*inf")),
    ("metric as text", json.dumps([dict(B2N, hm="68")]), Refused(r"'hm' must be a finite number.*'68'")),
    ("metric missing", json.dumps([{k: v for k, v in B2N.items() if k != "hm"}]), Refused(r"run1/results.json: entry 0 \(base2new\) lacks \['hm'\]")),
    ("unknown protocol", json.dumps([dict(B2N, protocol="few")]), Refused(r"entry 0 needs a 'protocol'")),
    ("not an entry", json.dumps([1, 2]), Refused(r"entry 0 needs a 'protocol'")),
    ("empty list", "[]", Refused(r"run1/results.json: holds no result entries")),
]  # fmt: skip


@pytest.mark.parametrize("content, expected", [r[1:] for r in RUNS], ids=[r[0] for r in RUNS])
def test_evaluate_runs_refuses_bad_run_folders_by_name(tmp_path, capsys, content, expected):
    run = tmp_path / "run1"
    good = tmp_path / "run0"  # a good run beside the bad one: one bad folder refuses the whole report
    good.mkdir()
    (good / "results.json").write_text(json.dumps([B2N]))
    if content is not NO_FOLDER:
        run.mkdir()
        if content is not MISSING:
            data = content if isinstance(content, bytes) else content.encode()
            (run / "results.json").write_bytes(data)
    report = tmp_path / "report"
    code = _evaluate_script().main(["--runs", str(good), str(run), "--report_dir", str(report)])
    err = capsys.readouterr().err
    if isinstance(expected, Refused):
        assert code == 2
        assert re.search(expected.pattern, err), err
        assert "Traceback" not in err and not report.exists()
        return
    assert code == 0, err
    per_seed = json.loads((report / "per_seed.json").read_text())
    assert len(per_seed) == 1 + expected.n_entries
