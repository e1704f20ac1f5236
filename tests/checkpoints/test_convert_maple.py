"""`python -m metaprompt_hf.convert --method maple`: an official MaPLe checkpoint (Dassl's `MultiModalPromptLearner/`
folder: the whole CustomCLIP) becomes an adapter whose text prompts are `ctx` + `compound_prompts_text.*` and whose
head holds the coupling functions; its eval logits are the official ones recorded in tests/fixtures/fidelity_maple
(within the fp16 rounding the official image encoder applies to the projected vision prompts, which the package does
not: docs/methods/maple.md M2)."""

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
HEAD = ["proj", "compound_prompt_projections.0"]
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
    return load_file(str(FIXTURES / "fidelity_maple" / "official_reference.safetensors"))


def official_state(ref: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The learned part of the CustomCLIP state dict as MaPLe's trainer saves it (trainers/maple.py), at the
    recorded state: `proj` in fp16 as the official prompt learner keeps it, plus the token buffers and a frozen key."""
    text = ref["state.text_prompts"]
    state = {"prompt_learner.ctx": text[0], "prompt_learner.compound_prompts_text.0": text[1]}
    for name in HEAD:
        for w in ("weight", "bias"):
            value = ref[f"state.head.{name}.{w}"]
            state[f"prompt_learner.{name}.{w}"] = value.half() if name == "proj" else value
    state["prompt_learner.token_prefix"] = torch.zeros(6, 1, 64)
    state["prompt_learner.token_suffix"] = torch.zeros(6, 74, 64)
    return state | {"image_encoder.ln_post.weight": torch.ones(128), "logit_scale": torch.tensor(4.6)}


def save_dassl(path: Path, state: dict) -> str:
    torch.save({"state_dict": state, "epoch": 5, "optimizer": None, "scheduler": None}, path)
    return str(path)


def test_official_maple_checkpoint_gives_the_official_eval_logits(tmp_path, fidelity_clip_dir, ref, capsys):
    ckpt = save_dassl(tmp_path / "model.pth.tar-5", official_state(ref))
    out = tmp_path / "maple"
    argv = ["--method", "maple", "--checkpoint", ckpt, "--base_model", fidelity_clip_dir, "--output_dir", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "token_prefix" in printed and "compound_prompt_projections.0.weight" in printed
    saved = load_file(out / "metaprompt_model.safetensors")
    assert set(saved) == {"text_prompts", *(f"head.{n}.{w}" for n in HEAD for w in ("weight", "bias"))}
    torch.testing.assert_close(saved["text_prompts"], ref["state.text_prompts"], rtol=0, atol=0)
    model = MetaPromptModel.from_pretrained(out).eval()
    adapter = model.adapters["default"]
    with torch.no_grad():
        vision = adapter.head.vision_prompts(model, adapter)
        logits = model(ref["images"], CLASSNAMES).logits
    assert (vision - ref["eval.vision_prompts"]).abs().max().item() <= 1e-6
    diff = (logits - ref["eval.logits"]).abs().max().item()
    sys.__stdout__.write(f"\nmaple: max |converted - official| eval logits = {diff:.3g} (fp32 vision prompts)\n")
    # the official encoder rounds the projected vision prompts to fp16; tests/methods/test_fidelity_maple.py shows
    # the logits equal to 1e-4 with that rounding, and this bound without it
    assert diff <= 2e-3, f"converted MaPLe adapter's eval logits differ from the official ones by {diff:.3g}"


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda s: s.pop("prompt_learner.proj.bias"),
            r"no 'prompt_learner.proj.bias': maple checkpoints hold",
        ),
        (
            lambda s: s.update({"prompt_learner.compound_prompt_projections.0.weight": torch.zeros(768, 64)}),
            r"'head.compound_prompt_projections.0.weight' has shape \(768, 64\), but .* expects \(128, 64\)",
        ),
        (
            lambda s: s.update({"prompt_learner.compound_prompts_text.0": torch.zeros(2, 512)}),
            r"'prompt_learner.compound_prompts_text.0' has shape \(2, 512\)",
        ),
        (
            lambda s: [s.pop(f"prompt_learner.compound_prompt_projections.0.{w}") for w in ("weight", "bias")],
            r"missing \['head.compound_prompt_projections.0.bias', 'head.compound_prompt_projections.0.weight'\]",
        ),
    ],
    ids=["no-proj-bias", "projection-of-another-width", "compound-prompt-of-another-width", "no-compound-projection"],
)
def test_maple_checkpoints_that_do_not_fit_are_refused(tmp_path, fidelity_clip_dir, ref, capsys, change, message):
    state = official_state(ref)
    change(state)
    ckpt = save_dassl(tmp_path / "model.pth.tar-5", state)
    out = tmp_path / "out"
    argv = ["--method", "maple", "--checkpoint", ckpt, "--base_model", fidelity_clip_dir, "--output_dir", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not out.exists()
