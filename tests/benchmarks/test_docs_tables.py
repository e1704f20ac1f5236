"""Every generated block of the docs equals what its result file gives (`python benchmarks/docs_tables.py --check`),
a changed result file makes the check name the stale block, and the leaderboard renders the intervals and deltas of
its file (on a synthetic fixture: `tests/fixtures/synthetic_leaderboard.json`, test data, not a measurement)."""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import docs_tables  # noqa: E402
from ablation_report import markdown as ablation_markdown  # noqa: E402
from docs_blocks import Block, sync  # noqa: E402
from leaderboard_tables import LEADERBOARD, leaderboard_markdown  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "synthetic_leaderboard.json"
ABLATION = "benchmarks/results/ablation.json"


def _copy_tree(dst: Path) -> Path:
    """The documents and every result file the blocks read, at their repository paths under `dst`."""
    for name in {b.doc for b in docs_tables.BLOCKS} | {s for b in docs_tables.BLOCKS for s in b.sources}:
        if (ROOT / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, dst / name)
    return dst


def test_committed_docs_equal_their_result_files(capsys):
    assert docs_tables.main(["--check"]) == 0, capsys.readouterr().err


def test_a_changed_result_file_makes_the_check_name_each_stale_block(tmp_path, capsys):
    root = _copy_tree(tmp_path)
    ablation = json.loads((root / ABLATION).read_text(encoding="utf-8"))
    default = ablation["settings"]["default_variant"]
    ablation["variants"][default]["base2new"]["average"]["delta_hm"]["mean"] = 9.87
    (root / ABLATION).write_text(json.dumps(ablation), encoding="utf-8")

    assert docs_tables.main(["--check"], root=root) == 1
    err = capsys.readouterr().err
    for doc, block in (
        ("README.md", "meta-step-ablation"),
        ("model_card.md", "meta-step-effect"),
        ("benchmarks/results/ablation.md", "ablation-table"),
    ):
        assert f"{doc}: block {block!r} is stale: line " in err
    assert "+9.87" in err and "mini-benchmark" not in err  # the first differing line; blocks of other files pass
    assert (root / "README.md").read_text(encoding="utf-8") == (ROOT / "README.md").read_text(encoding="utf-8")

    assert docs_tables.main([], root=root) == 0  # rewrites in place
    assert "+9.87 ±" in (root / "README.md").read_text(encoding="utf-8")
    assert docs_tables.main(["--check"], root=root) == 0


def test_a_placed_block_whose_source_is_missing_fails(tmp_path, capsys):
    root = _copy_tree(tmp_path)
    assert docs_tables.main(["--check"], root=root) == 0
    (root / LEADERBOARD).unlink()  # the leaderboard block is placed in README.md and benchmarks/README.md
    assert docs_tables.main(["--check"], root=root) == 1
    assert f"README.md: block 'leaderboard': its source {LEADERBOARD} does not exist" in capsys.readouterr().err
    before = (root / "README.md").read_text(encoding="utf-8")
    assert docs_tables.main([], root=root) == 1  # nor is it rewritten
    assert (root / "README.md").read_text(encoding="utf-8") == before


def test_a_block_removed_from_its_document_fails_while_its_source_exists(tmp_path, capsys):
    root = _copy_tree(tmp_path)
    card = root / "model_card.md"
    text = card.read_text(encoding="utf-8")
    start, end = text.index("{# generated: meta-step-effect"), text.index("{# /generated: meta-step-effect #}")
    card.write_text(text[:start] + text[end + len("{# /generated: meta-step-effect #}") :], encoding="utf-8")
    assert docs_tables.main(["--check"], root=root) == 1
    assert f"model_card.md: block 'meta-step-effect' is missing though {ABLATION} exists" in capsys.readouterr().err


def test_unknown_blocks_unclosed_blocks_and_jinja_in_a_template_are_refused(tmp_path):
    (tmp_path / "r.json").write_text("{}")
    block = Block("x", "doc.md", ("r.json",), lambda root: "{{ config.n_ctx }}")
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- generated: y (from r.json) -->\n<!-- /generated: y -->\n")
    assert "block 'y' is not a known block" in sync([block], tmp_path, check=True)[0]
    doc.write_text("<!-- generated: x (from r.json) -->\n")
    with pytest.raises(ValueError, match="block 'x' has no closing"):
        sync([block], tmp_path, check=True)
    doc.write_text("{# generated: x (from r.json) #}\n{# /generated: x #}\n")
    with pytest.raises(ValueError, match="contains Jinja syntax"):
        sync([block], tmp_path, check=True)
    with pytest.raises(ValueError, match="sources is empty"):
        Block("x", "doc.md", (), lambda root: "")


def test_leaderboard_tables_give_the_fixtures_intervals_and_deltas():
    board = json.loads(FIXTURE.read_text(encoding="utf-8"))
    text = leaderboard_markdown(board)
    mp = board["methods"]["metaprompt"]["base2new"]["average"]
    lo, hi = mp["hm"]["ci95"]
    assert f"{mp['hm']['mean']:.2f} [{lo:.2f}, {hi:.2f}]" in text
    d = mp["delta_hm_vs_zeroshot"]
    assert f"+{d['mean']:.2f} [+{d['ci95'][0]:.2f}, +{d['ci95'][1]:.2f}]" in text
    d = board["methods"]["coop"]["dg"]["average"]["delta_acc_vs_no_meta"]
    assert f"−{-d['mean']:.2f} [−{-d['ci95'][0]:.2f}, −{-d['ci95'][1]:.2f}]" in text
    assert board["settings"]["command"] in text and "8 epochs" in text and "6 epochs" in text
    # coop has no sketch cell, zeroshot no cost and no deltas against itself: "—"
    assert "| coop | 69.0 ± 0.8 | — | 70.00 [67.78, 72.22] |" in text
    assert "| zeroshot | 60.0 ± 0.0 | 61.0 ± 0.0 | 60.50 [60.50, 60.50] | — | — | — |" in text
    best = "Best average base-to-new HM: 65.50 [64.39, 66.61] (`metaprompt`, Δ vs zero-shot +5.00 [+4.17, +5.83])"
    assert best in text
    changed = copy.deepcopy(board)
    changed["methods"]["metaprompt"]["base2new"]["average"]["hm"]["mean"] = 10.0
    assert "best average DG accuracy" in leaderboard_markdown(changed)
    assert "(`metaprompt_no_meta`, Δ vs zero-shot +4.00" in leaderboard_markdown(changed)


def test_the_suites_cost_is_a_sum_of_run_seconds_and_a_wall_time_only_when_nothing_was_reused():
    board = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert "From an empty output folder" not in leaderboard_markdown(board)  # no tuning records: nothing claimed
    trained = [m for m in board["methods"] if m != "zeroshot"]
    board["settings"] |= {"run_seconds_total": 5000.0, "jobs": 2, "runs_reused": 0}
    # three runs, the last listed twice (the weights stage's default option): counted once
    runs = [{"tag": t, "run_seconds": 3000.0} for t in ("a", "b", "c")] + [{"tag": "c", "run_seconds": 3000.0}]
    last = {"methods": trained, "wall_seconds": 1800.0, "runs_reused": 1, "jobs": 2}
    text = leaderboard_markdown(board, tuning=({}, runs))
    assert "tuning's 3 runs (9,000 s)" in text and "14,000 s of runs, about 117 min 2 at a time" in text
    assert "Measured" not in text
    text = leaderboard_markdown(board, tuning=({"last_invocation": last}, runs))
    assert "took 1,800 s and 1,234 s of wall time, 50.6 min for the whole suite" in text
    # a run of an earlier invocation, a partial tuning, other jobs, a leaderboard that reused runs: no measured line
    for changed in ({"runs_reused": 2}, {"methods": trained[:1]}, {"jobs": 1}):
        assert "Measured" not in leaderboard_markdown(board, tuning=({"last_invocation": last | changed}, runs))
    board["settings"]["runs_reused"] = 1
    assert "Measured" not in leaderboard_markdown(board, tuning=({"last_invocation": last}, runs))


def test_ablation_states_each_cells_schedule_from_the_runs_record():
    ablation = json.loads((ROOT / ABLATION).read_text(encoding="utf-8"))
    dg = [r for r in ablation["settings"]["runs"] if r["protocol"] == "dg"]
    assert f"{dg[0]['epochs']} epochs" in ablation_markdown(ablation)
    for run in dg:
        run["epochs"], run["optimizer_steps"] = 11, 77
    text = ablation_markdown(ablation)
    assert "batch 16, 11 epochs = 77 optimizer steps)" in text and "photo, cartoon, painting, sketch (DG" in text
