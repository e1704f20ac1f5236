"""Record reference numbers from the OFFICIAL MaPLe code (muzairkhattak/multimodal-prompt-learning,
`trainers/maple.py` and its `clip/model.py`) on the fidelity suite's tiny CLIP, CPU: the eval-mode logits for a few
images and class names with a non-trivial state (context, compound prompts and coupling functions perturbed), and one
`forward_backward` from that state (loss, gradients, updated tensors, momentum).
`tests/methods/test_fidelity_maple.py` checks the package against them; provenance in
`tests/fixtures/fidelity_maple/PROVENANCE.md`.

    python benchmarks/fidelity/record_maple.py --output_dir tests/fixtures/fidelity_maple
    # offline: --official_dir <an exported tree of the pinned commit>  (EXTRA_SITE=<folder with ftfy> if needed)

The official code is downloaded at run time (never stored here) and runs unmodified, with three interventions, all
outside its logic: the weight download is redirected to the tiny CLIP; the ViT-B/16 widths the prompt learner
hard-codes (512 for the text, 768 for the vision width) are read as the tiny CLIP's (64, 128) through a proxy of
the `torch` / `nn` names of the trainer module; and the layer-0 coupling function, which the official code casts to
fp16 (`self.proj.half()`, which fails on fp32 input at PREC=fp32), is cast back to fp32 after `build_model`.
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

REPO, COMMIT = "muzairkhattak/multimodal-prompt-learning", "0d62419f24cb8e65b43adfb0611f1a53620e7214"
CLASSNAMES = ["golden_retriever", "tabby cat", "sports_car", "pizza", "sunflower", "teapot"]
LABELS = [0, 3, 5, 2]
BACKBONE = "tiny"
D_TEXT, D_VISION = 64, 128  # the tiny CLIP's widths, in place of ViT-B/16's 512 and 768
CONFIG = {
    # configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml with the depth cut to the tiny CLIP (2 of its 3 layers
    # get prompts, so the third carries the previous ones on), CTX_INIT "a photo" (N_CTX words: the package's text has
    # no fixed words after the context, docs/methods/maple.md M3), PREC fp32 and no warm-up (the step runs at the base
    # rate).
    "DATASET": {"NAME": "ImageNet", "SUBSAMPLE_CLASSES": "base", "NUM_SHOTS": 16},
    "INPUT": {"SIZE": [32, 32]},
    "MODEL": {"BACKBONE": {"NAME": BACKBONE}, "INIT_WEIGHTS": ""},
    "OPTIM": {"NAME": "sgd", "LR": 0.0035, "MOMENTUM": 0.9, "WEIGHT_DECAY": 5e-4, "SGD_DAMPNING": 0,
              "SGD_NESTEROV": False, "STAGED_LR": False, "LR_SCHEDULER": "cosine", "MAX_EPOCH": 5,
              "WARMUP_EPOCH": 0},
    "TRAINER": {"NAME": "MaPLe", "MAPLE": {"N_CTX": 2, "CTX_INIT": "a photo", "PREC": "fp32", "PROMPT_DEPTH": 2}},
    "SEED": 1,
}  # fmt: skip


def _widths(args: tuple) -> tuple:
    return tuple({512: D_TEXT, 768: D_VISION}.get(a, a) if isinstance(a, int) else a for a in args)


class TorchProxy(types.ModuleType):
    """`torch` as the trainer module sees it: `torch.empty(n_ctx, 512)` gets the tiny text width."""

    def __getattr__(self, name: str) -> object:
        return getattr(torch, name)

    def empty(self, *size: object, **kw: object) -> torch.Tensor:
        return torch.empty(*_widths(size), **kw)


class NNProxy(types.ModuleType):
    """`torch.nn` as the trainer module sees it: `nn.Linear(ctx_dim, 768)` gets the tiny vision width."""

    def __getattr__(self, name: str) -> object:
        return getattr(torch.nn, name)

    def Linear(self, *args: object, **kw: object) -> torch.nn.Linear:  # noqa: N802 (torch's name)
        return torch.nn.Linear(*_widths(args), **kw)


def tensors_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The learned tensors in the package's layout: θ_t (depth, n_ctx, d_text) with row 0 `prompt_learner.ctx` and
    row i `compound_prompts_text.{i-1}`; the coupling functions under the head's keys."""
    pl = model.prompt_learner
    out = {"text_prompts": torch.stack([pl.ctx, *pl.compound_prompts_text])}
    out["head.proj.weight"], out["head.proj.bias"] = pl.proj.weight, pl.proj.bias
    for i, layer in enumerate(pl.compound_prompt_projections):
        out[f"head.compound_prompt_projections.{i}.weight"] = layer.weight
        out[f"head.compound_prompt_projections.{i}.bias"] = layer.bias
    return out


def official_params(model: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """Package key → the official parameter(s) it stacks (for gradients and momentum)."""
    pl = model.prompt_learner
    out = {"text_prompts": [pl.ctx, *pl.compound_prompts_text]}
    out["head.proj.weight"], out["head.proj.bias"] = [pl.proj.weight], [pl.proj.bias]
    for i, layer in enumerate(pl.compound_prompt_projections):
        out[f"head.compound_prompt_projections.{i}.weight"] = [layer.weight]
        out[f"head.compound_prompt_projections.{i}.bias"] = [layer.bias]
    return out


def set_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for key, params in official_params(model).items():
            value = state[key]
            if len(params) == 1:
                params[0].copy_(value)
            else:
                for i, p in enumerate(params):
                    p.copy_(value[i])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="tests/fixtures/fidelity_maple")
    parser.add_argument("--official_dir", default=None, help="An exported tree of the pinned commit (offline).")
    args = parser.parse_args(argv)
    H.prepare_env()
    folder = H.official_tree(REPO, COMMIT, args.official_dir)
    clip, maple = H.import_official(folder, "maple.py", "official_maple")
    weights = Path(tempfile.mkdtemp(prefix="tiny-clip-openai-")) / "tiny.pt"
    torch.save(dict(H.tiny_clip_openai_state_dict()), weights)
    clip._MODELS[BACKBONE] = "tiny"  # the official loader's download, redirected to the tiny CLIP
    clip._download = lambda url, root=None: str(weights)
    maple.torch, maple.nn = TorchProxy("torch"), NNProxy("nn")

    T: dict[str, torch.Tensor] = {}
    D: dict[str, str] = {}

    def put(key: str, t: torch.Tensor, desc: str) -> None:
        t = t.detach().clone().contiguous()
        T[key] = t.float() if t.is_floating_point() else t
        D[key] = desc

    def build() -> object:
        tr = object.__new__(maple.MaPLe)
        tr.cfg = H.Cfg(deepcopy(CONFIG))
        tr.device = torch.device("cpu")
        tr.dm = types.SimpleNamespace(dataset=types.SimpleNamespace(classnames=list(CLASSNAMES)))
        tr.batch_idx, tr.num_batches = 0, 2  # not an epoch's last batch: no schedule step
        H.set_random_seed(CONFIG["SEED"])
        tr.build_model()
        # `self.proj.half()`: at PREC=fp32 `self.proj(self.ctx)` multiplies fp32 by fp16 and fails; back to fp32
        # (its output is cast to fp16 in the image encoder anyway, clip/model.py `VisionTransformer_MaPLe`).
        tr.model.prompt_learner.proj.float()
        return tr

    g = torch.Generator().manual_seed(1234)
    images = torch.randn(len(LABELS), 3, 32, 32, generator=g)
    put("images", images, "pixel_values [B,3,32,32], CLIP-normalised random normal (seed 1234)")
    put("labels", torch.tensor(LABELS), "class labels (indices into classnames)")

    info: dict = {}
    tr = build()
    model = tr.model
    info["trainable_parameters"] = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    info["prompted_texts"] = ["a photo " + c.replace("_", " ") + "." for c in CLASSNAMES]
    assert torch.equal(clip.tokenize(info["prompted_texts"]), model.tokenized_prompts)
    info["logit_scale_exp"] = model.logit_scale.exp().item()
    init = tensors_of(model)
    for k, v in init.items():
        put(f"init.{k}", v, f"{k} after build_model (text row 0 = 'a photo' embeddings, the rest N(0, 0.02^2))")
    # A non-trivial state, exactly representable in fp16: the official forward casts the compound text prompts with
    # .half(), so only such values reach the encoders unchanged. The projected vision prompts are rounded to fp16 by
    # the official forward whatever the state (docs/methods/maple.md M2).
    gen = torch.Generator().manual_seed(4321)
    state = {k: (v.detach() + 0.05 * torch.randn(v.shape, generator=gen)).half().float() for k, v in init.items()}
    for k, v in state.items():
        put(f"state.{k}", v, f"the recorded state of {k}: init + N(0, 0.05^2) noise (seed 4321), rounded to fp16")

    set_state(model, state)
    cap = {}
    hooks = [
        model.image_encoder.register_forward_hook(lambda m, a, o: cap.__setitem__("img", o.detach().clone())),
        model.text_encoder.register_forward_hook(lambda m, a, o: cap.__setitem__("txt", o.detach().clone())),
        model.prompt_learner.register_forward_hook(
            lambda m, a, o: cap.__setitem__("vis", [o[1].detach().clone(), *[v.detach().clone() for v in o[3]]])
        ),
    ]
    model.eval()
    with torch.no_grad():
        logits = model(images)
    for h in hooks:
        h.remove()
    put("eval.logits", logits, "CustomCLIP in eval mode: s<x~, t> at the state [B,n_cls]")
    put("eval.image_features", cap["img"], "x~ before L2 normalisation [B,E]")
    put("eval.text_features", cap["txt"], "t before L2 normalisation [n_cls,E]")
    put("eval.vision_prompts", torch.stack(cap["vis"]),
        "the projected vision prompts the prompt learner returns, before the encoder's .half() [depth,n_ctx,d_vision]")  # fmt: skip
    del tr, model

    # ---- one forward_backward from the state
    tr = build()
    model = tr.model
    set_state(model, state)
    model.train()
    summary = tr.forward_backward({"img": images.clone(), "label": torch.tensor(LABELS)})
    params = official_params(model)
    for k, ps in params.items():
        stack = lambda ts: ts[0] if len(ts) == 1 else torch.stack(ts)  # noqa: E731
        put(f"step.param.{k}", stack([p.detach() for p in ps]), f"{k} after the SGD step")
        put(f"step.grad.{k}", stack([p.grad for p in ps]), f"{k}: the gradient the step used")
        put(f"step.momentum.{k}", stack([tr.optim.state[p]["momentum_buffer"] for p in ps]),
            f"{k}: SGD momentum buffer after the step")  # fmt: skip
    info["step"] = {"loss": summary["loss"], "lr": tr.get_current_lr()}
    del tr, model

    H.write_reference(
        args.output_dir,
        T,
        D,
        repo=REPO,
        commit=COMMIT,
        files=["trainers/maple.py", "clip/"],
        script="record_maple.py",
        fields={"config": CONFIG, "classnames": CLASSNAMES, "labels": LABELS, **info},
    )
    print(json.dumps(info, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
