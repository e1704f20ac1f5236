"""Record reference numbers from the OFFICIAL MMRL code (yunncheng/MMRL, `trainers/mmrl.py` and its
`clip/model_mmrl.py`) on the fidelity suite's tiny CLIP, CPU: the eval-mode logits (class, representation and fused)
for a few images on base class names and on new class names with a non-trivial state (every learned tensor
perturbed), and one `forward_backward` from that state (loss, gradients, updated tensors, AdamW moments).
`tests/methods/test_fidelity_mmrl.py` and `tests/checkpoints/test_convert_mmrl.py` check the package against them;
provenance in `tests/fixtures/fidelity_mmrl/PROVENANCE.md`.

    python benchmarks/fidelity/record_mmrl.py --output_dir tests/fixtures/fidelity_mmrl
    # offline: --official_dir <an exported tree of the pinned commit>  (EXTRA_SITE=<folder with ftfy> if needed)

The official code is downloaded at run time (never stored here) and runs unmodified. Interventions, all outside its
logic: the weight download is redirected to the tiny CLIP, and Dassl's `build_optimizer` is the harness's stand-in
with Dassl's "adamw" branch added (MMRL's optimizer; the harness's own covers SGD only).The keys and shapes of the
state dict Dassl's `save_model` writes are recorded for the converter (`checkpoint_keys`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import types
from copy import deepcopy
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import official_harness as H  # noqa: E402

REPO, COMMIT = "yunncheng/MMRL", "27d8821f6ac135a1d0c8e4c5ed78af14df0cd82e"
BASE = ["golden_retriever", "tabby cat", "sports_car", "pizza", "sunflower", "teapot"]
NEW = ["hot_air_balloon", "violin", "red fox", "lighthouse"]
LABELS = [0, 3, 5, 2]
BACKBONE = "tiny"
CONFIG = {
    # configs/trainers/MMRL/vit_b16.yaml with what the tiny CLIP (3 layers per tower) and a one-step recording need:
    # REP_LAYERS [2, 3] (inserted before layer 2, replaced before layer 3), REP_DIM 32, 32-px images, PREC fp32 and
    # no warm-up (the step runs at the base rate); REG_WEIGHT of OxfordPets (trainers/config.py), whose template
    # "a photo of a {}, a type of pet." the text uses. AdamW: lr 0.001 and Dassl's defaults.
    "DATASET": {"NAME": "OxfordPets", "SUBSAMPLE_CLASSES": "base", "NUM_SHOTS": 16},
    "INPUT": {"SIZE": [32, 32]},
    "MODEL": {"BACKBONE": {"NAME": BACKBONE}, "INIT_WEIGHTS": ""},
    "OPTIM": {"NAME": "adamw", "LR": 0.001, "WEIGHT_DECAY": 5e-4, "ADAM_BETA1": 0.9, "ADAM_BETA2": 0.999,
              "STAGED_LR": False, "LR_SCHEDULER": "cosine", "MAX_EPOCH": 10, "WARMUP_EPOCH": 0},
    "TRAINER": {"NAME": "MMRL", "MMRL": {"ALPHA": 0.7, "REG_WEIGHT": 0.2, "N_REP_TOKENS": 5, "REP_LAYERS": [2, 3],
                                          "PREC": "fp32", "REP_DIM": 32}},
    "TASK": "B2N",
    "SEED": 1,
}  # fmt: skip
TEMPLATE = "a photo of a {}, a type of pet."


def build_optimizer(model: torch.nn.Module, optim_cfg: H.Cfg, param_groups: object = None) -> torch.optim.Optimizer:
    """dassl.optim.build_optimizer (Dassl.pytorch c61a1b5, dassl/optim/optimizer.py), its "adamw" branch without
    staged learning rates: AdamW over `model.parameters()` (the frozen ones get no gradient and stay)."""
    assert optim_cfg.NAME == "adamw" and not optim_cfg.STAGED_LR
    params = param_groups if param_groups is not None else model.parameters()
    return torch.optim.AdamW(
        params,
        lr=optim_cfg.LR,
        weight_decay=optim_cfg.WEIGHT_DECAY,
        betas=(optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2),
    )


def official_params(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Package key (the head's) → the official parameter."""
    rl = model.representation_learner
    out = {"head.compound_rep_tokens": rl.compound_rep_tokens, "head.proj_rep": model.image_encoder.proj_rep}
    for tower in ("r2v", "r2t"):
        for k, layer in enumerate(getattr(rl, f"compound_rep_tokens_{tower}proj")):
            out[f"head.compound_rep_tokens_{tower}proj.{k}.weight"] = layer.weight
            out[f"head.compound_rep_tokens_{tower}proj.{k}.bias"] = layer.bias
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="tests/fixtures/fidelity_mmrl")
    parser.add_argument("--official_dir", default=None, help="An exported tree of the pinned commit (offline).")
    args = parser.parse_args(argv)
    H.prepare_env()
    folder = H.official_tree(REPO, COMMIT, args.official_dir)
    clip, mmrl = H.import_official(folder, "mmrl.py", "official_mmrl")
    weights = Path(tempfile.mkdtemp(prefix="tiny-clip-openai-")) / "tiny.pt"
    torch.save(dict(H.tiny_clip_openai_state_dict()), weights)
    clip._MODELS[BACKBONE] = "tiny"  # the official loader's download, redirected to the tiny CLIP
    clip._download = lambda url, root=None: str(weights)
    mmrl.build_optimizer = build_optimizer

    T: dict[str, torch.Tensor] = {}
    D: dict[str, str] = {}

    def put(key: str, t: torch.Tensor, desc: str) -> None:
        t = t.detach().clone().contiguous()
        T[key] = t.float() if t.is_floating_point() else t
        D[key] = desc

    def build(classnames: list[str]) -> object:
        tr = object.__new__(mmrl.MMRL)
        tr.cfg = H.Cfg(deepcopy(CONFIG))
        tr.device = torch.device("cpu")
        tr.dm = types.SimpleNamespace(dataset=types.SimpleNamespace(classnames=list(classnames)))
        tr.batch_idx, tr.num_batches = 0, 2  # not an epoch's last batch: no schedule step
        H.set_random_seed(CONFIG["SEED"])
        tr.build_model()
        return tr

    def set_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for key, p in official_params(model).items():
                p.copy_(state[key])

    g = torch.Generator().manual_seed(1234)
    images = torch.randn(len(LABELS), 3, 32, 32, generator=g)
    put("images", images, "pixel_values [B,3,32,32], CLIP-normalised random normal (seed 1234)")
    put("labels", torch.tensor(LABELS), "class labels (indices into the base class names)")

    info: dict = {"template": TEMPLATE}
    tr = build(BASE)
    model = tr.model
    info["trainable_parameters"] = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    for part, names in (("base", BASE), ("new", NEW)):
        texts = [TEMPLATE.format(c.replace("_", " ")) for c in names]
        info[f"{part}_texts"] = texts
        put(f"{part}.token_ids", clip.tokenize(texts), f"the official tokenisation of the {part} texts [C,77]")
    assert torch.equal(model.tokenized_prompts, T["base.token_ids"])
    init = {k: p.detach().clone() for k, p in official_params(model).items()}
    for k, v in init.items():
        put(f"init.{k}", v, f"{k} after build_model (seed 1)")
    gen = torch.Generator().manual_seed(4321)
    state = {k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in init.items()}
    for k, v in state.items():
        put(f"state.{k}", v, f"the recorded state of {k}: init + N(0, 0.05^2) noise (seed 4321)")
    # the keys of what Dassl's `save_model` writes for the registered model (its whole state_dict), for the converter
    info["checkpoint_keys"] = {k: list(v.shape) for k, v in model.state_dict().items()}
    del tr, model

    # ---- eval: the same state on the base and on the new class names (the model is built per class list)
    for part, names in (("base", BASE), ("new", NEW)):
        tr = build(names)
        model = tr.model
        set_state(model, state)
        cap = {}
        hooks = [
            model.image_encoder.register_forward_hook(
                lambda m, a, o, cap=cap: cap.__setitem__("img", [t.clone() for t in o])
            ),
            model.text_encoder.register_forward_hook(
                lambda m, a, o, cap=cap: cap.__setitem__("txt", o.detach().clone())
            ),
        ]
        model.eval()
        with torch.no_grad():
            logits, logits_rep, logits_fusion, _, _ = model(images)
        for h in hooks:
            h.remove()
        put(f"eval.{part}.logits", logits, "s<x~, t>, s = 100 [B,C]")
        put(f"eval.{part}.logits_rep", logits_rep, "s<x~_rep, t> [B,C]")
        put(f"eval.{part}.logits_fusion", logits_fusion, "alpha logits + (1 - alpha) logits_rep [B,C]")
        put(f"eval.{part}.image_features", cap["img"][0], "x~ (CLS) before L2 normalisation [B,E]")
        put(f"eval.{part}.image_features_rep", cap["img"][1], "x~_rep before L2 normalisation [B,E]")
        put(f"eval.{part}.text_features", cap["txt"], "t before L2 normalisation [C,E]")
        # what the official test() scores for TASK B2N: the fusion on base, the class logits on new
        put(f"eval.{part}.scored", logits_fusion if part == "base" else logits, f"MMRL.test()'s output on {part}")
        del tr, model

    # ---- one forward_backward from the state
    tr = build(BASE)
    model = tr.model
    set_state(model, state)
    model.train()
    summary = tr.forward_backward({"img": images.clone(), "label": torch.tensor(LABELS)})
    for k, p in official_params(model).items():
        put(f"step.param.{k}", p, f"{k} after the AdamW step")
        put(f"step.grad.{k}", p.grad, f"{k}: the gradient the step used")
        put(f"step.exp_avg.{k}", tr.optim.state[p]["exp_avg"], f"{k}: AdamW first moment after the step")
        put(f"step.exp_avg_sq.{k}", tr.optim.state[p]["exp_avg_sq"], f"{k}: AdamW second moment after the step")
    info["step"] = {"loss": summary["loss"], "acc": summary["acc"], "lr": tr.get_current_lr()}
    del tr, model

    H.write_reference(
        args.output_dir,
        T,
        D,
        repo=REPO,
        commit=COMMIT,
        files=["trainers/mmrl.py", "clip/model_mmrl.py", "clip/"],
        script="record_mmrl.py",
        fields={"config": CONFIG, "base": BASE, "new": NEW, "labels": LABELS, **info},
    )
    print(json.dumps(info["step"], indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
