"""`python -m metaprompt_hf.convert --method mmrl`: an official MMRL checkpoint (Dassl's
`MultiModalRepresentationLearner/` folder: the whole CustomCLIP) becomes an adapter whose head holds the
representation tokens, their projections and proj_rep; its eval logits are the official ones recorded in
tests/fixtures/fidelity_mmrl, on the base classes (fused) and on new ones (class logits)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from metaprompt_hf import MetaPromptModel
from metaprompt_hf.convert import main
from metaprompt_hf.modeling.heads import seen_classes

REF = Path(__file__).resolve().parents[1] / "fixtures" / "fidelity_mmrl"


@pytest.fixture(scope="module")
def ref() -> dict[str, torch.Tensor]:
    return load_file(str(REF / "official_reference.safetensors"))


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((REF / "official_reference.json").read_text())


def official_key(key: str) -> str:
    name = key[len("head.") :]
    return "image_encoder.proj_rep" if name == "proj_rep" else f"representation_learner.{name}"


def official_state(ref: dict[str, torch.Tensor], meta: dict) -> dict[str, torch.Tensor]:
    """The CustomCLIP state dict as MMRL's trainer saves it (trainers/mmrl.py), at the recorded state: the learned
    tensors under their official keys, the `prompt_embeddings` buffer and frozen CLIP keys with the recorded shapes."""
    state = {official_key(k[len("state.") :]): v for k, v in ref.items() if k.startswith("state.")}
    shapes = meta["checkpoint_keys"]
    assert set(state) <= set(shapes)  # the recorded official state dict holds every learned key
    for key in ("prompt_embeddings", "image_encoder.ln_post.weight", "text_encoder.text_projection"):
        state[key] = torch.zeros(shapes[key])
    return state


def save_dassl(path: Path, state: dict) -> str:
    torch.save({"state_dict": state, "epoch": 10, "optimizer": None, "scheduler": None}, path)
    return str(path)


def test_official_mmrl_checkpoint_gives_the_official_eval_logits(tmp_path, fidelity_clip_dir, ref, meta, capsys):
    ckpt = save_dassl(tmp_path / "model.pth.tar-10", official_state(ref, meta))
    cfg = meta["config"]["TRAINER"]["MMRL"]
    knobs = {"rep_layers": cfg["REP_LAYERS"], "rep_dim": cfg["REP_DIM"], "reg_weight": cfg["REG_WEIGHT"]}
    out = tmp_path / "mmrl"
    argv = ["--method", "mmrl", "--checkpoint", ckpt, "--base_model", fidelity_clip_dir, "--output_dir", str(out)]
    argv += ["--template", meta["template"], "--method_args", json.dumps(knobs)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "prompt_embeddings" in printed and "compound_rep_tokens_r2tproj.1.bias" in printed
    saved = load_file(out / "metaprompt_model.safetensors")
    expected = {k[len("state.") :] for k in ref if k.startswith("state.")}
    assert set(saved) == expected
    for key in expected:
        torch.testing.assert_close(saved[key], ref[f"state.{key}"], rtol=0, atol=0, msg=key)
    model = MetaPromptModel.from_pretrained(out).eval()
    worst = 0.0
    for part in ("base", "new"):
        with torch.no_grad(), seen_classes(part == "base"):
            logits = model(ref["images"], meta[part]).logits
        diff = (logits - ref[f"eval.{part}.scored"]).abs().max().item()
        assert diff <= 1e-4, (part, diff)
        worst = max(worst, diff)
    sys.__stdout__.write(f"\nmmrl: max |converted - official| eval logits (base fused, new) = {worst:.3g}\n")


def test_a_checkpoint_with_other_representation_layers_is_refused(tmp_path, fidelity_clip_dir, ref, meta, capsys):
    ckpt = save_dassl(tmp_path / "model.pth.tar-10", official_state(ref, meta))
    argv = ["--method", "mmrl", "--checkpoint", ckpt, "--base_model", fidelity_clip_dir, "--output_dir"]
    argv += [str(tmp_path / "o"), "--method_args", json.dumps({"rep_layers": [3], "rep_dim": 32})]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unexpected ['head.compound_rep_tokens_r2tproj.1.bias'" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
