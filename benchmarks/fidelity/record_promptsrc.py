"""Record reference numbers from the OFFICIAL PromptSRC code (muzairkhattak/PromptSRC, `trainers/promptsrc.py` and
its IVLP `clip/model.py`) on the fidelity suite's tiny CLIP, CPU: the eval-mode logits for a few images and class
names with non-trivial prompts, one `forward_backward` (every loss term, gradients, updated prompts, momentum) from
that state, and three one-batch epochs with Gaussian prompt aggregation (the prompts after each epoch and the
aggregate the trainer loads at the end). `tests/methods/test_fidelity_promptsrc.py` checks the package against them;
provenance in `tests/fixtures/fidelity_promptsrc/PROVENANCE.md`.

    python benchmarks/fidelity/record_promptsrc.py --output_dir tests/fixtures/fidelity_promptsrc
    # offline: --official_dir <an exported tree of the pinned commit>  (EXTRA_SITE=<folder with ftfy> if needed)

The official code is downloaded at run time (never stored here) and runs unmodified: only the weight download is
redirected (`clip._MODELS` / `clip._download` point at the tiny CLIP saved as an OpenAI state dict), so the
official `load_clip_to_cpu` builds both the prompted model and the frozen zero-shot models itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import types
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import official_harness as H  # noqa: E402

REPO, COMMIT = "muzairkhattak/PromptSRC", "bb95c77b634d63488f2cad81ff4a72d53bdd06d5"
CLASSNAMES = ["golden_retriever", "tabby cat", "sports_car", "pizza", "sunflower", "teapot"]
LABELS = [0, 3, 5, 2]
BACKBONE = "tiny"
CONFIG = {
    # configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml with the depth cut to the tiny CLIP (2 of its 3
    # layers get prompts, so the third carries the previous ones on), PREC fp32, no warm-up (the steps run at the
    # base rate) and a 3-epoch Gaussian (mean 2, std 1) so that the aggregation can be recorded in three epochs.
    "DATASET": {"NAME": "ImageNet", "SUBSAMPLE_CLASSES": "base", "NUM_SHOTS": 16},
    "INPUT": {"SIZE": [32, 32]},
    "MODEL": {"BACKBONE": {"NAME": BACKBONE}, "INIT_WEIGHTS": ""},
    "OPTIM": {"NAME": "sgd", "LR": 0.0025, "MOMENTUM": 0.9, "WEIGHT_DECAY": 5e-4, "SGD_DAMPNING": 0,
              "SGD_NESTEROV": False, "STAGED_LR": False, "LR_SCHEDULER": "cosine", "MAX_EPOCH": 3,
              "WARMUP_EPOCH": 0},
    "TRAINER": {"NAME": "PromptSRC",
                "PROMPTSRC": {"N_CTX_VISION": 4, "N_CTX_TEXT": 4, "CTX_INIT": "a photo of a", "PREC": "fp32",
                              "PROMPT_DEPTH_VISION": 2, "PROMPT_DEPTH_TEXT": 2, "TEXT_LOSS_WEIGHT": 25,
                              "IMAGE_LOSS_WEIGHT": 10, "GPA_MEAN": 2, "GPA_STD": 1}},
    "SEED": 1,
}  # fmt: skip


def prompts_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """θ_t (depth, n_ctx, d_text) and θ_v (depth, n_pro, d_vision) in the package's layout: row 0 the input-level
    context (text `prompt_learner.ctx`, vision `image_encoder.VPT`), row i the `VPT_shallow` of layer i."""
    text = [model.prompt_learner.ctx]
    vision = [model.image_encoder.VPT]
    for block in model.text_encoder.transformer.resblocks:
        if getattr(block, "add_prompt", False):
            text.append(block.VPT_shallow)
    for block in model.image_encoder.transformer.resblocks:
        if getattr(block, "add_prompt", False):
            vision.append(block.VPT_shallow)
    return {"text_prompts": torch.stack(text), "vision_prompts": torch.stack(vision)}


def set_prompts(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        model.prompt_learner.ctx.copy_(state["text_prompts"][0])
        model.image_encoder.VPT.copy_(state["vision_prompts"][0])
        text = [b for b in model.text_encoder.transformer.resblocks if getattr(b, "add_prompt", False)]
        vision = [b for b in model.image_encoder.transformer.resblocks if getattr(b, "add_prompt", False)]
        for i, block in enumerate(text, 1):
            block.VPT_shallow.copy_(state["text_prompts"][i])
        for i, block in enumerate(vision, 1):
            block.VPT_shallow.copy_(state["vision_prompts"][i])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="tests/fixtures/fidelity_promptsrc")
    parser.add_argument("--official_dir", default=None, help="An exported tree of the pinned commit (offline).")
    args = parser.parse_args(argv)
    H.prepare_env()
    folder = H.official_tree(REPO, COMMIT, args.official_dir)
    clip, psrc = H.import_official(folder, "promptsrc.py", "official_promptsrc")
    weights = Path(tempfile.mkdtemp(prefix="tiny-clip-openai-")) / "tiny.pt"
    torch.save(dict(H.tiny_clip_openai_state_dict()), weights)
    clip._MODELS[BACKBONE] = "tiny"  # the official loader's download, redirected to the tiny CLIP
    clip._download = lambda url, root=None: str(weights)

    T: dict[str, torch.Tensor] = {}
    D: dict[str, str] = {}

    def put(key: str, t: torch.Tensor, desc: str) -> None:
        t = t.detach().clone().contiguous()
        T[key] = t.float() if t.is_floating_point() else t
        D[key] = desc

    losses: list[dict[str, float]] = []

    class FProxy(types.ModuleType):
        """torch.nn.functional, logging the values of the loss terms the official step computes."""

        def __getattr__(self, name: str) -> object:
            return getattr(torch.nn.functional, name)

        def cross_entropy(self, *a: object, **k: object) -> torch.Tensor:
            v = torch.nn.functional.cross_entropy(*a, **k)
            losses.append({"ce": v.item()})
            return v

        def l1_loss(self, *a: object, **k: object) -> torch.Tensor:
            v = torch.nn.functional.l1_loss(*a, **k)
            losses.append({"l1": v.item()})
            return v

        def kl_div(self, *a: object, **k: object) -> torch.Tensor:
            v = torch.nn.functional.kl_div(*a, **k)
            losses.append({"kl_sum": v.item()})
            return v

    psrc.F = FProxy("F")

    def build() -> object:
        tr = object.__new__(psrc.PromptSRC)
        tr.cfg = H.Cfg(deepcopy(CONFIG))
        tr.device = torch.device("cpu")
        tr.dm = types.SimpleNamespace(dataset=types.SimpleNamespace(classnames=list(CLASSNAMES)))
        tr.batch_idx, tr.num_batches = 0, 2  # not an epoch's last batch: no schedule or aggregation
        H.set_random_seed(CONFIG["SEED"])
        tr.build_model()
        # At PREC=fp32 the official step cannot run: `load_clip_to_cpu(cfg, True)` leaves the zero-shot image encoder
        # in CLIP's fp16 and `CustomCLIP.forward` feeds it fp32 pixels (conv2d refuses the mix). It is given the
        # pixels in fp16, as the official PREC=fp16 configs do; its output and the zero-shot logits stay fp16.
        zs = tr.model.prompt_learner.ZS_image_encoder
        zs_forward = zs.forward
        zs.forward = lambda x: zs_forward(x.half())
        return tr

    g = torch.Generator().manual_seed(1234)
    images = torch.randn(3, len(LABELS), 3, 32, 32, generator=g)  # one batch per recorded epoch
    put("images", images, "pixel_values of 3 batches [3,B,3,32,32], CLIP-normalised random normal (seed 1234)")
    put("labels", torch.tensor(LABELS), "class labels of every batch (indices into classnames)")

    info: dict = {}
    tr = build()
    model = tr.model
    info["trainable_parameters"] = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    info["prompted_texts"] = ["a photo of a " + c.replace("_", " ") + "." for c in CLASSNAMES]
    assert torch.equal(clip.tokenize(info["prompted_texts"]), model.tokenized_prompts)
    info["diversity_templates"] = list(psrc.IMAGENET_TEMPLATES)
    info["logit_scale_exp"] = model.logit_scale.exp().item()
    init = prompts_of(model)
    for k, v in init.items():
        put(f"init.{k}", v, f"{k} after build_model (text row 0 = 'a photo of a' embeddings, the rest N(0, 0.02^2))")
    # A non-trivial state, exactly representable in fp16: the official IVLP layers cast every prompt with .half()
    # before use, so only such values reach the encoders unchanged.
    gen = torch.Generator().manual_seed(4321)
    state = {k: (v.detach() + 0.05 * torch.randn(v.shape, generator=gen)).half().float() for k, v in init.items()}
    for k, v in state.items():
        put(f"state.{k}", v, f"the recorded state of {k}: init + N(0, 0.05^2) noise (seed 4321), rounded to fp16")
    put("fixed_embeddings", model.prompt_learner.fixed_embeddings,
        "prompt_learner.fixed_embeddings: the mean over the 60 templates of the frozen text features, NOT normalised "
        "[n_cls,E] (fp32)")  # fmt: skip

    set_prompts(model, state)
    cap = {}
    hooks = [
        model.image_encoder.register_forward_hook(lambda m, a, o: cap.__setitem__("img", o.detach().clone())),
        model.text_encoder.register_forward_hook(lambda m, a, o: cap.__setitem__("txt", o.detach().clone())),
    ]
    model.eval()
    with torch.no_grad():
        logits = model(images[0])
    for h in hooks:
        h.remove()
    put("eval.logits", logits, "CustomCLIP in eval mode: s<x~, t> with the state's prompts [B,n_cls]")
    put("eval.image_features", cap["img"], "x~ before L2 normalisation [B,E]")
    put("eval.text_features", cap["txt"], "t before L2 normalisation [n_cls,E]")
    del tr, model

    # ---- one forward_backward from the state
    tr = build()
    model = tr.model
    set_prompts(model, state)
    model.train()
    outputs = {}
    hook = model.prompt_learner.ZS_image_encoder.register_forward_hook(
        lambda m, a, o: outputs.__setitem__("zs", o.detach().clone())
    )
    losses.clear()
    params = prompts_of(model)  # stacked copies; read the parameters again after the step
    summary = tr.forward_backward({"img": images[0].clone(), "label": torch.tensor(LABELS)})
    hook.remove()
    put("step.zero_shot_image_features", outputs["zs"], "ZS_image_encoder output (frozen x, not normalised) [B,E]")
    named = dict(model.named_parameters())

    def stacked(kind: str, trainer: object) -> dict[str, torch.Tensor]:
        out = {}
        for key, first, layer_tpl in (
            ("text_prompts", "prompt_learner.ctx", "text_encoder.transformer.resblocks.{}.VPT_shallow"),
            ("vision_prompts", "image_encoder.VPT", "image_encoder.transformer.resblocks.{}.VPT_shallow"),
        ):
            rows = [first] + [layer_tpl.format(i) for i in range(1, len(params[key]))]
            ts = [named[r] if kind == "param" else (named[r].grad if kind == "grad" else trainer.optim.state[named[r]]["momentum_buffer"]) for r in rows]  # fmt: skip
            out[key] = torch.stack([t.detach() for t in ts])
        return out

    for kind, desc in (("param", "after the SGD step"), ("grad", "gradient seen by the step"),
                       ("momentum", "SGD momentum buffer after the step")):  # fmt: skip
        for k, v in stacked(kind, tr).items():
            put(f"step.{kind}.{k}", v, f"{k} {desc} [depth,tokens,width]")
    ce, l1_text, l1_image, kl_sum = (next(iter(d.values())) for d in losses)
    n = len(LABELS) * len(CLASSNAMES)
    cfg = CONFIG["TRAINER"]["PROMPTSRC"]
    info["step"] = {
        "loss": summary["loss"], "ce": ce, "l1_text_mean": l1_text, "l1_image_mean": l1_image,
        "kl_sum": kl_sum, "kl_over_numel": kl_sum / n,
        "total_recomputed": ce + cfg["TEXT_LOSS_WEIGHT"] * l1_text + cfg["IMAGE_LOSS_WEIGHT"] * l1_image + kl_sum / n,
        "lr": tr.get_current_lr(),
        "zs_image_encoder_dtype": str(model.prompt_learner.ZS_image_encoder.conv1.weight.dtype),
    }  # fmt: skip
    del tr, model

    # ---- three one-batch epochs with Gaussian prompt aggregation
    tr = build()
    model = tr.model
    set_prompts(model, state)
    model.train()
    tr.num_batches = 1  # every forward_backward ends an epoch: schedule step, then aggregation
    per_epoch = []
    for e in range(CONFIG["OPTIM"]["MAX_EPOCH"]):
        tr.batch_idx = 0
        step_hook = tr.optim.register_step_post_hook(lambda *a, m=model: per_epoch.append(prompts_of(m)))
        tr.forward_backward({"img": images[e].clone(), "label": torch.tensor(LABELS)})
        step_hook.remove()
    final = prompts_of(model)
    for e, p in enumerate(per_epoch):
        for k, v in p.items():
            put(f"gpa.epoch{e + 1}.{k}", v, f"{k} after epoch {e + 1}'s optimizer step (before any aggregation)")
    for k, v in final.items():
        put(f"gpa.final.{k}", v, f"{k} after the last epoch: the Gaussian-weighted aggregate the trainer loaded")
    info["gpa"] = {
        "weights": [float(w) for w in tr.gauss],
        "epochs": CONFIG["OPTIM"]["MAX_EPOCH"],
        "lr_per_epoch_note": "update_lr() steps the cosine schedule at each epoch end, so epoch e runs at "
        "lr_e = 0.5*LR*(1+cos(pi*(e-1)/MAX_EPOCH))",
        "lrs": [float(0.5 * 0.0025 * (1 + np.cos(np.pi * e / 3))) for e in range(3)],
    }
    del tr, model

    H.write_reference(
        args.output_dir,
        T,
        D,
        repo=REPO,
        commit=COMMIT,
        files=["trainers/promptsrc.py", "trainers/imagenet_templates.py", "clip/"],
        script="record_promptsrc.py",
        fields={"config": CONFIG, "classnames": CLASSNAMES, "labels": LABELS, **info},
    )
    print(json.dumps({k: v for k, v in info.items() if k != "diversity_templates"}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
