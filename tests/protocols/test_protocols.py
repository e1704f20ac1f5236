"""The protocol registry: every protocol implements the interface, and the meta episodes are meta.py's."""

from __future__ import annotations

import pytest
import torch

from metaprompt_hf.hub import card as hub
from metaprompt_hf.meta import class_split_episodes, domain_split_episodes
from metaprompt_hf.protocols import METRIC_KEYS, PROTOCOLS, ProtocolData, format_results, get_protocol


def _proto(num_classes: int, sources=None) -> ProtocolData:
    return ProtocolData(None, [], None, [f"c{i}" for i in range(num_classes)], {}, source_domains=sources)


def test_registry_entries_implement_the_interface():
    for name, protocol in PROTOCOLS.items():
        assert protocol.name == name
        assert protocol.metric_keys and all(isinstance(k, str) for k in protocol.metric_keys)
        assert protocol.meta_prompts in ("text", "vision")
        assert protocol.default_tokens >= 1
    assert {n: p.metric_keys for n, p in PROTOCOLS.items()} == METRIC_KEYS
    assert all(p.metric_keys == p.report.metric_keys for p in PROTOCOLS.values())
    with pytest.raises(ValueError, match="protocol: expected one of"):
        get_protocol("nope")


def test_base2new_episodes_are_the_seeded_class_split_of_meta():
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    got = get_protocol("base2new").meta_episodes(labels, None, _proto(6), seed=3, step=11)
    want = class_split_episodes(labels, 6, torch.Generator().manual_seed(3 * 1_000_003 + 11), 2)
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        assert torch.equal(g.train.index, w.train.index) and torch.equal(g.test.classes, w.test.classes)
    splits = {
        tuple(get_protocol("base2new").meta_episodes(labels, None, _proto(6), seed=3, step=s)[0].test.classes.tolist())
        for s in range(10)
    }
    assert len(splits) > 1  # a fresh split per step


def test_dg_episodes_leave_one_source_domain_out():
    labels, domains = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0, 0, 0, 2, 2, 2])
    got = get_protocol("dg").meta_episodes(labels, domains, _proto(3, [0, 2]), seed=1, step=0)
    want = domain_split_episodes(labels, domains, [0, 2], 3)
    assert [e.test.index.tolist() for e in got] == [e.test.index.tolist() for e in want] == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="domains"):
        get_protocol("dg").meta_episodes(labels, None, _proto(3, [0, 2]), seed=1, step=0)


def test_format_results_per_protocol():
    b2n = {"protocol": "base2new", "method": "m", "dataset": "d", "base": 80.0, "new": 60.0, "hm": 68.571}
    assert format_results(b2n) == "m on d: Base 80.00 | New 60.00 | HM 68.57"
    dg = {"protocol": "dg", "method": "m", "dataset": "d", "target_domain": "sketch", "accuracy": 55.0}
    assert format_results(dg) == "m on d: Target sketch 55.00"


def test_transfer_results_reach_the_report_and_the_model_card():
    from metaprompt_hf.evaluation import aggregate, markdown_table

    entries = [
        {"protocol": "cross_dataset", "method": "metaprompt", "dataset": "dtd", "seed": s, "accuracy": a}
        for s, a in ((1, 40.0), (2, 50.0))
    ]
    hub._check_results(entries, "results.json")
    assert "| metaprompt | dtd | — | 2 | 45.00 ± 7.07 |" in markdown_table(aggregate(entries))
    (card,) = hub._eval_results(entries, None)
    assert card.metric_value == 45.0 and card.metric_config == "cross_dataset"


def test_transfer_evaluation_uses_the_target_datasets_templates(monkeypatch):
    from types import SimpleNamespace

    from metaprompt_hf.protocols import EvalSet, evaluate_protocol, transfer

    seen = {}

    def fake_evaluate_set(model, eval_set, image_processor, **kw):
        seen.update(kw)
        return {"accuracy": 50.0, "n": 2, "skipped": 0}

    monkeypatch.setattr(transfer, "evaluate_set", fake_evaluate_set)
    args = SimpleNamespace(
        protocol="cross_dataset", method="metaprompt", seed=1, shots=16, eval_split="test", template=None,
        per_device_eval_batch_size=8,
    )  # fmt: skip
    proto = ProtocolData(None, [], None, ["a", "b"], {"all": EvalSet(None, ["a", "b"], [0, 1])})
    data = SimpleNamespace(name="dtd", domain_names=None)
    entry = evaluate_protocol(args, None, proto, data, SimpleNamespace(image_processor=None))
    assert seen["templates"] == ["{} texture"] and entry["accuracy"] == 50.0 and entry["n_classes"] == 2
