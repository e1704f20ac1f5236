"""Result entries describe themselves (`results.Report`, written by the protocol that produced them): the model
card renders them without knowing the protocol, entries written before reports render as they always did, each
protocol aggregates and tabulates its own runs, and training draws the protocols' episodes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from metaprompt_hf import MetaPromptConfig, evaluation
from metaprompt_hf.hub import results
from metaprompt_hf.hub.card import build_model_card, load_results
from metaprompt_hf.hub.results import Column, Metric, Report
from metaprompt_hf.protocols import PROTOCOLS, EvalSet, Protocol, ProtocolData, evaluate_protocol, get_protocol
from metaprompt_hf.protocols import dg as dg_module

CONFIG = MetaPromptConfig(base_model_name_or_path="testorg/tiny-clip")
LEGACY = [
    {"protocol": "base2new", "method": "m", "dataset": "testorg/shapes", "base": 90.0, "new": 70.0, "hm": 78.75,
     "seed": 1},
    {"protocol": "base2new", "method": "m", "dataset": "testorg/shapes", "base": 92.0, "new": 72.0, "hm": 80.78,
     "seed": 2},
    {"protocol": "dg", "method": "m", "dataset": "testorg/styles", "target_domain": "sketch", "accuracy": 50.0,
     "seed": 1},
    {"protocol": "dg", "method": "m", "dataset": "testorg/styles", "target_domain": "sketch", "accuracy": 54.0,
     "seed": 2},
    {"protocol": "cross_dataset", "method": "m", "dataset": "testorg/dtd", "accuracy": 40.0, "seed": 1},
]  # fmt: skip


class ToyShiftProtocol(Protocol):
    """A protocol the library has never heard of: clean and shifted accuracy at one corruption severity."""

    name = "toy_shift"
    report = Report(
        metrics=(
            Metric("clean", "clean", "accuracy", "clean", "Clean accuracy"),
            Metric("shifted", "shifted", "accuracy", "severity-{severity}", "Accuracy at severity {severity}"),
        ),
        section="Corruption shift",
        about="Scored on clean images and on corrupted ones.",
        columns=(Column("severity", "severity", "?"),),
    )

    def prepare(self, data, **kw):  # pragma: no cover - the card never prepares data
        raise NotImplementedError

    def evaluate(self, model, proto, data, image_processor, **kw):  # pragma: no cover
        raise NotImplementedError

    def describe(self, entry):
        return f"Clean {entry['clean']:.2f} | Shifted {entry['shifted']:.2f}"


def _card(entries) -> str:
    return str(build_model_card(CONFIG, results=entries, repo_id="org/x"))


def test_legacy_reports_are_the_protocols_own():
    """The core's description of old entries is what those protocols write today, so both render alike."""
    assert {name: p.report for name, p in PROTOCOLS.items()} == results.LEGACY_REPORTS
    assert all(p.metric_keys == p.report.metric_keys for p in PROTOCOLS.values())


def test_entries_carrying_their_report_render_the_card_of_legacy_entries(tmp_path):
    written = [e | {"report": get_protocol(e["protocol"]).report.to_dict()} for e in LEGACY]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(written))  # through JSON, as a run writes it: tuples become lists
    card = _card(load_results(path))
    assert card == _card(LEGACY)
    assert (
        "### Base-to-new generalisation" in card and "| **testorg/styles** | **sketch** | m | **mean of 2** |" in card
    )


def test_a_protocol_the_library_does_not_know_reaches_the_card(tmp_path):
    report = ToyShiftProtocol.report.to_dict()
    runs = [
        {"protocol": "toy_shift", "method": "m", "dataset": "testorg/cifar", "severity": 3, "clean": 90.0,
         "shifted": shifted, "seed": seed, "report": report}
        for seed, shifted in ((1, 60.0), (2, 64.0))
    ]  # fmt: skip
    path = tmp_path / "results.json"
    path.write_text(json.dumps(runs))
    card = _card(load_results(path))
    _, header, body = card.split("---\n", 2)
    assert "### Corruption shift\n\nScored on clean images and on corrupted ones." in body
    assert "| dataset | severity | method | seed | clean | shifted |" in body
    assert "| testorg/cifar | 3 | m | 1 | 90.00 | 60.00 |" in body
    assert "| **testorg/cifar** | **3** | m | **mean of 2** | **90.00** | **62.00** |" in body
    assert "config: severity-3" in header and "Accuracy at severity 3 (%, mean of 2 runs)" in header
    assert ToyShiftProtocol.metric_keys == ("clean", "shifted")


def test_protocol_defaults_aggregate_and_tabulate_any_report():
    rows = [
        {"protocol": "toy_shift", "method": "m", "dataset": "d", "clean": c, "shifted": s, "seed": seed}
        for seed, c, s in ((2, 80.0, 50.0), (1, 90.0, 70.0))
    ]
    agg = ToyShiftProtocol().aggregate(rows)
    assert agg["seeds"] == [1, 2] and agg["n_runs"] == 2 and agg["clean"] == 85.0 and agg["shifted"] == 60.0
    assert agg["std"]["shifted"] == pytest.approx(14.142135, abs=1e-5)
    protocol = ToyShiftProtocol()
    assert protocol.table_header()[0] == "| method | dataset | target domain | seeds | clean | shifted |"
    assert protocol.table_row(agg) == "| m | d | — | 2 | 85.00 ± 7.07 | 60.00 ± 14.14 |"


def test_a_protocol_giving_only_metric_keys_gets_a_plain_report():
    class Keys(Protocol):
        name = "keys"
        metric_keys = ("top1", "top5")

    assert Keys.report.metric_keys == ("top1", "top5") and Keys.report.section == "Protocol keys"
    assert results.fill(Keys.report.metrics[0].config, {"protocol": "keys"}) == "keys"
    with pytest.raises(TypeError, match=r"Both: metric_keys \('top1',\) differ from its report's"):

        class Both(ToyShiftProtocol):
            metric_keys = ("top1",)
            report = ToyShiftProtocol.report


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"protocol": "nope", "accuracy": 1.0}, r"entry 0 needs a 'protocol'.*or a 'report'.*got protocol 'nope'"),
        ({"protocol": "x", "accuracy": 1.0, "report": {"metrics": []}}, r"entry 0: report: a report needs"),
        ({"protocol": "x", "accuracy": 1.0, "report": {"section": "s"}}, r"entry 0: report: not a valid report"),
        (
            {
                "protocol": "x",
                "a": 1.0,
                "report": {"metrics": [{"key": "a", "label": "a", "of_means": ["max", ["a"]]}]},
            },
            r"metric 'a': of_means must be one of \['harmonic_mean'\]",
        ),
        ({"protocol": "dg", "accuracy": "55"}, r"entry 0: 'accuracy' must be a finite number"),
        (
            {"protocol": "x", "a": 1.0, "report": {"metrics": [{"key": "a", "label": 5}]}},
            r"entry 0: report: metric 'a': label must be a string, got 5",
        ),
    ],
)
def test_bad_entries_are_refused_naming_the_field(entry, match):
    with pytest.raises(ValueError, match=match):
        results.check_results([entry], "results.json")


def test_one_harmonic_mean():
    assert evaluation.harmonic_mean is results.harmonic_mean
    assert results.harmonic_mean(80.0, 60.0) == 2.0 * 80.0 * 60.0 / 140.0 and results.harmonic_mean(0.0, 0.0) == 0.0
    runs = [{"base": 80.0, "new": 60.0, "hm": 68.57}, {"base": 90.0, "new": 50.0, "hm": 64.29}]
    combined = results.combine_runs(runs, results.LEGACY_REPORTS["base2new"])
    assert combined == {"base": 85.0, "new": 55.0, "hm": results.harmonic_mean(85.0, 55.0)}
    assert results.combine_runs(runs[:1], results.LEGACY_REPORTS["base2new"])["hm"] == 68.57  # one run: exactly


def test_evaluate_protocol_writes_the_protocols_report(monkeypatch):
    monkeypatch.setattr(dg_module, "evaluate_set", lambda *a, **kw: {"accuracy": 55.0, "n": 2, "skipped": 0})
    args = SimpleNamespace(
        protocol="dg", method="metaprompt", seed=1, shots=1, eval_split="test", template=None,
        per_device_eval_batch_size=8,
    )  # fmt: skip
    proto = ProtocolData(None, [], None, ["a", "b"], {"target": EvalSet(None, ["a", "b"], [0, 1])}, source_domains=[0])
    proto.fewshot["target_domain"] = "sketch"
    data = SimpleNamespace(name="styles", domain_names=["photo", "sketch"])
    entry = evaluate_protocol(args, None, proto, data, SimpleNamespace(image_processor=None))
    assert entry["report"] == get_protocol("dg").report.to_dict()
    assert results.report_of(json.loads(json.dumps(entry))) == get_protocol("dg").report


def test_training_step_draws_the_protocols_episodes():
    """`TrainingStep` without a protocol draws what the protocols draw, from the same (seed, step)."""
    from metaprompt_hf.meta import MetaSettings
    from metaprompt_hf.training.step import TrainingStep

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    domains = torch.tensor([0, 0, 2, 2, 0, 2, 0, 2])
    cases = [
        ("base2new", MetaSettings(target="text"), None, ProtocolData(None, [], None, list("abcdef"), {})),
        ("dg", MetaSettings(target="vision"), domains, ProtocolData(None, [], None, list("abcdef"), {}, [0, 2])),
    ]
    for name, meta, doms, proto in cases:
        step = TrainingStep(None, optimizer, proto.train_class_names, meta=meta, source_domains=proto.source_domains)
        step.seed = 5
        for s in (0, 7):
            mine = step.episodes_for(labels, doms, s)
            theirs = get_protocol(name).meta_episodes(labels, doms, proto, seed=5, step=s)
            assert [(e.train.index.tolist(), e.test.classes.tolist()) for e in mine] == [
                (e.train.index.tolist(), e.test.classes.tolist()) for e in theirs
            ]
