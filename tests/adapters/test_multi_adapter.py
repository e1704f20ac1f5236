"""Many adapters on one base model: the PEFT-style API, per-call adapter choice, and concurrent callers (threads)
that get exactly their serial answers."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from metaprompt_hf import MetaPromptConfig, MetaPromptModel
from metaprompt_hf.testing import tiny_clip

CLASSES = ["red apple", "green_leaf", "blue sky", "yellow sun"]
CONFIGS = {
    "a": MetaPromptConfig(),
    "b": MetaPromptConfig(n_ctx=4, n_pro=1),
    "c": MetaPromptConfig(n_pro=0, text_depth=1, coupled_branches=False),
    "d": MetaPromptConfig(n_ctx=1, n_pro=3, templates=["a sketch of a {}"]),
}


@pytest.fixture(scope="module")
def base():
    return tiny_clip(seed=0)


@pytest.fixture(scope="module")
def adapter_dirs(base, tmp_path_factory):
    clip, processor = base
    root = tmp_path_factory.mktemp("adapters")
    out = {}
    for i, (name, config) in enumerate(CONFIGS.items()):
        torch.manual_seed(10 + i)
        MetaPromptModel(clip, config, processor).save_pretrained(root / name)
        out[name] = str(root / name)
    return out


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))


def _multi(base, adapter_dirs) -> MetaPromptModel:
    clip, processor = base
    model = MetaPromptModel.from_pretrained(adapter_dirs["a"], base_model=clip, processor=processor, adapter_name="a")
    for name in ("b", "c", "d"):
        model.load_adapter(adapter_dirs[name], adapter_name=name)
    return model


def test_load_set_delete_and_the_active_adapter(base, adapter_dirs):
    model = _multi(base, adapter_dirs)
    assert model.active_adapter == "a" and model.adapter_names == ["a", "b", "c", "d"]
    assert tuple(model.text_prompts.shape) == (3, 2, 32)
    model.set_adapter("b")
    assert model.active_adapter == "b" and model.config.n_ctx == 4 and tuple(model.text_prompts.shape) == (3, 4, 32)
    assert all(not p.requires_grad for p in model.prompt_parameters("c"))
    for call, message in (
        (lambda: model.set_adapter("zz"), "no adapter 'zz'"),
        (lambda: model.delete_adapter("b"), "active adapter"),
        (lambda: model.load_adapter(adapter_dirs["c"], adapter_name="c"), "already loaded"),
        (lambda: model.predict(torch.zeros(1, 3, 32, 32), CLASSES, adapter_name="zz"), "adapter_name"),
        (lambda: model.load_adapter(adapter_dirs["c"], adapter_name="train"), "reserved"),
    ):
        with pytest.raises(ValueError, match=message):
            call()
    model.delete_adapter("c")
    assert model.adapter_names == ["a", "b", "d"]


def test_per_call_adapter_equals_separately_loaded_models(base, adapter_dirs, pixels):
    clip, processor = base
    model = _multi(base, adapter_dirs)
    for name, folder in adapter_dirs.items():
        alone = MetaPromptModel.from_pretrained(folder, base_model=clip, processor=processor)
        expected = alone.predict(pixels, CLASSES, return_zero_shot=True)
        got = model.predict(pixels, CLASSES, return_zero_shot=True, adapter_name=name)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1]), name
    assert model.active_adapter == "a"  # a per-call choice switches nothing


def test_saving_writes_only_that_adapter(base, adapter_dirs, tmp_path):
    model = _multi(base, adapter_dirs)
    model.save_pretrained(tmp_path / "b", adapter_name="b")
    assert sorted(os.listdir(tmp_path / "b")) == [
        "README.md",
        "metaprompt_config.json",
        "metaprompt_model.safetensors",
    ]
    again = MetaPromptModel.from_pretrained(tmp_path / "b", base_model=base[0], processor=base[1])
    assert again.config == model.adapters["b"].config
    assert all(torch.equal(again.prompt_state_dict()[k], v) for k, v in model.prompt_state_dict("b").items())


def test_an_adapter_that_does_not_fit_is_refused_and_leaves_the_model_unchanged(base, adapter_dirs, tmp_path):
    wider, processor = tiny_clip(text_hidden_size=64)
    MetaPromptModel(wider, MetaPromptConfig(), processor).save_pretrained(tmp_path / "wide")
    model = _multi(base, adapter_dirs)
    with pytest.raises(ValueError, match="text_hidden_size"):
        model.load_adapter(tmp_path / "wide", adapter_name="wide")
    assert model.adapter_names == ["a", "b", "c", "d"]


def _serial(model, clip, pixels):
    expected = {}
    for name in CONFIGS:
        expected[name] = model.predict(pixels, CLASSES, adapter_name=name, return_zero_shot=True)
    with torch.no_grad():
        expected["stock"] = clip.get_image_features(pixel_values=pixels).pooler_output
    return expected


def _hammer(callers: dict, expected: dict, n_threads: int, rounds: int) -> tuple[int, int, list[str]]:
    """Each thread calls every caller `rounds` times in its own order; returns (calls, mismatches, errors)."""
    counts, errors, barrier = [0, 0], [], threading.Barrier(n_threads)
    lock = threading.Lock()

    def work(k: int) -> None:
        names = list(callers)
        barrier.wait()
        for _ in range(rounds):
            for name in names[k % len(names) :] + names[: k % len(names)]:
                try:
                    got = callers[name]()
                    same = (
                        all(torch.equal(g, e) for g, e in zip(got, expected[name]))
                        if isinstance(got, tuple)
                        else (torch.equal(got, expected[name]))
                    )
                except Exception as err:  # noqa: BLE001 - every failure is counted and reported
                    same = False
                    with lock:
                        errors.append(f"{name}: {type(err).__name__}: {err}")
                with lock:
                    counts[0] += 1
                    counts[1] += not same

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts[0], counts[1], errors


def test_threads_with_different_adapters_on_one_model_equal_serial_results(base, adapter_dirs, pixels):
    clip, _ = base
    model = _multi(base, adapter_dirs)
    expected = _serial(model, clip, pixels)
    callers = {
        name: (lambda name=name: model.predict(pixels, CLASSES, adapter_name=name, return_zero_shot=True))
        for name in CONFIGS
    }
    callers["stock"] = lambda: clip.get_image_features(pixel_values=pixels).pooler_output  # zero-shot, no prompts
    calls, mismatches, errors = _hammer(callers, expected, n_threads=4, rounds=6)
    assert calls == 4 * 6 * 5
    assert (mismatches, errors) == (0, [])


def test_threads_with_separate_models_sharing_one_base_equal_serial_results(base, adapter_dirs, pixels):
    """The situation of a Space holding one model per adapter: several `MetaPromptModel`s around ONE base."""
    clip, processor = base
    models = {
        n: MetaPromptModel.from_pretrained(d, base_model=clip, processor=processor) for n, d in adapter_dirs.items()
    }
    expected = {n: m.predict(pixels, CLASSES, return_zero_shot=True) for n, m in models.items()}
    callers = {n: (lambda m=m: m.predict(pixels, CLASSES, return_zero_shot=True)) for n, m in models.items()}
    calls, mismatches, errors = _hammer(callers, expected, n_threads=4, rounds=6)
    assert calls == 4 * 6 * 4
    assert (mismatches, errors) == (0, [])


def test_training_one_adapter_while_another_thread_predicts_with_another(base, adapter_dirs, pixels):
    clip, _ = base
    model = _multi(base, adapter_dirs)
    model.load_adapter(adapter_dirs["a"], adapter_name="tuned", is_trainable=True)
    expected = model.predict(pixels, CLASSES, adapter_name="b")
    optimizer = torch.optim.SGD(model.prompt_parameters("tuned"), lr=0.1)
    stop, results = threading.Event(), []

    def predictor() -> None:
        while not stop.is_set():
            results.append(torch.equal(model.predict(pixels, CLASSES, adapter_name="b"), expected))

    thread = threading.Thread(target=predictor)
    thread.start()
    try:
        for _ in range(4):
            loss = model(pixels, CLASSES, labels=torch.tensor([0, 1, 2]), adapter_name="tuned").loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        stop.set()
        thread.join()
    assert results and all(results)


def test_save_pretrained_can_push_one_adapter(base, adapter_dirs, tmp_path):
    from conftest import RecordingApi

    model = _multi(base, adapter_dirs)
    api = RecordingApi()
    assert model.save_pretrained(tmp_path / "b", adapter_name="b", push_to_hub=True, repo_id="me/b", api=api)
    _, repo, files, _ = api.calls[1]
    assert (
        repo == "me/b" and files["metaprompt_config.json"] == (tmp_path / "b" / "metaprompt_config.json").read_bytes()
    )
    assert model.peft_config["b"].n_ctx == 4
    with pytest.raises(ValueError, match="only with push_to_hub=True"):
        model.save_pretrained(tmp_path / "c", adapter_name="c", repo_id="me/c")
    assert not (tmp_path / "c").exists()  # refused before anything was written
