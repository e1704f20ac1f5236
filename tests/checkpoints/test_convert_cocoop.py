"""`python -m metaprompt_hf.convert --method cocoop`: an official CoCoOp checkpoint (Dassl's `prompt_learner/`
folder: `ctx`, the meta-network, the token buffers) becomes an adapter whose head holds the meta-network, and whose
eval logits are the official ones recorded in tests/fixtures/fidelity_cocoop."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from metaprompt_hf import MetaPromptModel
from metaprompt_hf.convert import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PACKAGE_TOKENIZER = Path(__file__).resolve().parents[2] / "src" / "metaprompt_hf" / "assets" / "mini-clip"
META_NET = [f"meta_net.linear{i}.{w}" for i in (1, 2) for w in ("weight", "bias")]
CLASSNAMES = ["golden_retriever", "tabby cat", "sports_car", "pizza", "sunflower", "teapot"]


@pytest.fixture(scope="module")
def fidelity_clip_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("fidelity_clip")
    for f in (FIXTURES / "fidelity" / "tiny_clip").iterdir():
        shutil.copy(f, folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        shutil.copy(PACKAGE_TOKENIZER / name, folder)
    return str(folder)


@pytest.fixture(scope="module")
def ref() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / "fidelity_cocoop" / "official_reference.safetensors"))


def official_state(ref: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The prompt learner's state dict as CoCoOp's trainer saves it (trainers/cocoop.py), at the recorded state."""
    state = {"ctx": ref["state.ctx"]} | {k: ref[f"state.{k}"] for k in META_NET}
    return state | {"token_prefix": torch.zeros(6, 1, 64), "token_suffix": torch.zeros(6, 72, 64)}


def save_dassl(path: Path, state: dict) -> str:
    torch.save({"state_dict": state, "epoch": 10, "optimizer": None, "scheduler": None}, path)
    return str(path)


def test_official_cocoop_checkpoint_gives_the_official_eval_logits(tmp_path, fidelity_clip_dir, ref, capsys):
    ckpt = save_dassl(tmp_path / "model.pth.tar-10", official_state(ref))
    out = tmp_path / "cocoop"
    argv = ["--method", "cocoop", "--checkpoint", ckpt, "--base_model", fidelity_clip_dir, "--output_dir", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "token_prefix" in printed and "meta_net.linear1.weight" in printed
    saved = load_file(out / "metaprompt_model.safetensors")
    assert set(saved) == {"text_prompts", *(f"head.{k}" for k in META_NET)}
    model = MetaPromptModel.from_pretrained(out).eval()
    with torch.no_grad():
        logits = model(ref["images"], CLASSNAMES).logits
    diff = (logits - ref["eval.logits"]).abs().max().item()
    sys.__stdout__.write(f"\ncocoop: max |converted - official| eval logits = {diff:.3g}\n")
    assert diff <= 1e-4, f"converted CoCoOp adapter's eval logits differ from the official ones by {diff:.3g}"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("meta_net.linear2.bias"), r"no 'meta_net.linear2.bias': cocoop checkpoints hold"),
        (
            lambda s: s.update({"meta_net.linear2.weight": torch.zeros(512, 3)}),
            r"tensor 'head.meta_net.linear2.weight' has shape \(512, 3\), but .* expects \(64, 3\)",
        ),
        (lambda s: s.update({"ctx": torch.zeros(4, 512)}), r"'ctx' has shape \(4, 512\), but cocoop .* \(4, 64\)"),
    ],
    ids=["no-meta-net", "meta-net-of-another-width", "ctx-of-another-width"],
)
def test_cocoop_checkpoints_that_do_not_fit_are_refused(tmp_path, fidelity_clip_dir, ref, capsys, change, message):
    state = official_state(ref)
    change(state)
    ckpt = save_dassl(tmp_path / "model.pth.tar-10", state)
    out = tmp_path / "out"
    argv = ["--method", "cocoop", "--checkpoint", ckpt, "--base_model", fidelity_clip_dir, "--output_dir", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not out.exists()
