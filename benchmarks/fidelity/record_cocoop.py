"""Record reference numbers from the OFFICIAL CoCoOp code (KaiyangZhou/CoOp, `trainers/cocoop.py`) on the fidelity
suite's tiny CLIP, CPU, fp32: the eval-mode logits for a few images and class names with non-trivial context vectors
and meta-network weights, and one `forward_backward` (loss, gradients, updated parameters, momentum) from that state.
`tests/methods/test_fidelity_cocoop.py` checks the package against the numbers; the provenance is in
`tests/fixtures/fidelity_cocoop/PROVENANCE.md`.

    python benchmarks/fidelity/record_cocoop.py --output_dir tests/fixtures/fidelity_cocoop
    # offline: --official_dir <an exported tree of the pinned commit>  (EXTRA_SITE=<folder with ftfy> if needed)

The official code is downloaded at run time (never stored here). `load_clip_to_cpu` is the one function replaced: it
downloads OpenAI's weights; here it builds the tiny CLIP with the official `clip.build_model`.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from copy import deepcopy
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import official_harness as H  # noqa: E402

REPO, COMMIT = "KaiyangZhou/CoOp", "ff61507c790454bce7c5052c3ac39e60772f1f89"
CLASSNAMES = ["golden_retriever", "tabby cat", "sports_car", "pizza", "sunflower", "teapot"]
LABELS = [0, 3, 5, 2]
CONFIG = {
    # configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml (N_CTX 4, CTX_INIT "a photo of a", SGD lr 0.002,
    # Dassl's momentum 0.9 and weight decay 5e-4), PREC fp32 (the config's fp16 is the GPU setting), a batch of 4
    # (the config's 1 would leave the batch mean untested), no warm-up (the recorded step runs at the base learning
    # rate), tiny CLIP at 32 px.
    "DATASET": {"NAME": "ImageNet", "SUBSAMPLE_CLASSES": "base", "NUM_SHOTS": 16},
    "INPUT": {"SIZE": [32, 32]},
    "MODEL": {"BACKBONE": {"NAME": "tiny random ViT (tests/fixtures/fidelity/tiny_clip)"}, "INIT_WEIGHTS": ""},
    "OPTIM": {"NAME": "sgd", "LR": 0.002, "MOMENTUM": 0.9, "WEIGHT_DECAY": 5e-4, "SGD_DAMPNING": 0,
              "SGD_NESTEROV": False, "STAGED_LR": False, "LR_SCHEDULER": "cosine", "MAX_EPOCH": 10,
              "WARMUP_EPOCH": 0},
    "TRAINER": {"NAME": "CoCoOp", "COCOOP": {"N_CTX": 4, "CTX_INIT": "a photo of a", "PREC": "fp32"}},
    "SEED": 1,
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="tests/fixtures/fidelity_cocoop")
    parser.add_argument("--official_dir", default=None, help="An exported tree of the pinned commit (offline).")
    args = parser.parse_args(argv)
    H.prepare_env()
    folder = H.official_tree(REPO, COMMIT, args.official_dir)
    clip, cc = H.import_official(folder, "cocoop.py", "official_cocoop")
    sd = H.tiny_clip_openai_state_dict()

    T: dict[str, torch.Tensor] = {}
    D: dict[str, str] = {}

    def put(key: str, t: torch.Tensor, desc: str) -> None:
        t = t.detach().clone().contiguous()
        T[key] = t.float() if t.is_floating_point() else t
        D[key] = desc

    g = torch.Generator().manual_seed(1234)
    images = torch.randn(len(LABELS), 3, 32, 32, generator=g)
    put("images", images, "pixel_values [B,3,32,32], already CLIP-normalised (random normal, seed 1234)")
    put("labels", torch.tensor(LABELS), "class labels (indices into classnames)")

    def build() -> object:
        cc.load_clip_to_cpu = lambda cfg: clip.build_model({k: v.clone() for k, v in sd.items()})
        tr = object.__new__(cc.CoCoOp)
        tr.cfg = H.Cfg(deepcopy(CONFIG))
        tr.device = torch.device("cpu")
        tr.dm = types.SimpleNamespace(dataset=types.SimpleNamespace(classnames=list(CLASSNAMES)))
        tr.batch_idx, tr.num_batches = 0, 2  # not the epoch's last batch: no scheduler step inside the step
        H.set_random_seed(CONFIG["SEED"])
        tr.build_model()
        return tr

    tr = build()
    model, pl = tr.model, tr.model.prompt_learner
    names = [n for n, p in pl.named_parameters() if p.requires_grad]
    info: dict = {"trainable_parameters": [n for n, p in model.named_parameters() if p.requires_grad]}
    info["prompted_texts"] = ["a photo of a " + c.replace("_", " ") + "." for c in CLASSNAMES]
    assert torch.equal(clip.tokenize(info["prompted_texts"]), model.tokenized_prompts)
    put("tokenized_prompts", model.tokenized_prompts, "official ids of 'a photo of a <name>.' [n_cls,77]")
    put("init.ctx", pl.ctx, "the context after CTX_INIT: token embeddings of 'a photo of a' [4,d_text]")
    put("logit_scale", model.logit_scale.exp(), "s = exp(logit_scale)")
    # The recorded state: every trainable tensor + N(0, 0.05²) noise (seed 4321), so the context is not its init and
    # the meta-network's bias is not small.
    noise = torch.Generator().manual_seed(4321)
    state = {n: (p.detach() + 0.05 * torch.randn(p.shape, generator=noise)).clone() for n, p in pl.named_parameters()}
    for n in names:
        put(f"state.{n}", state[n], f"the recorded state of prompt_learner.{n}: its init + N(0, 0.05^2) noise")

    def load_state(pl: torch.nn.Module) -> None:
        with torch.no_grad():
            for n, p in pl.named_parameters():
                p.copy_(state[n])

    cap = {}
    hook = model.image_encoder.register_forward_hook(lambda m, a, o: cap.__setitem__("img", o.detach().clone()))
    load_state(pl)
    model.eval()
    with torch.no_grad():
        logits = model(images)
        xn = cap["img"] / cap["img"].norm(dim=-1, keepdim=True)
        bias = pl.meta_net(xn)
    hook.remove()
    put("eval.logits", logits, "CustomCLIP in eval mode: s<x_b, t_c(ctx + pi(x_b))> at the recorded state [B,n_cls]")
    put("eval.image_features", cap["img"], "x before L2 normalisation (frozen image encoder) [B,E]")
    put("eval.meta_net_bias", bias, "pi(x) = meta_net(x / |x|) at the recorded state [B,d_text]")
    del tr, model, pl

    tr = build()
    model, pl = tr.model, tr.model.prompt_learner
    load_state(pl)
    model.train()
    summary = tr.forward_backward({"img": images.clone(), "label": torch.tensor(LABELS)})
    for n, p in pl.named_parameters():
        if p.requires_grad:
            put(f"step.grad.{n}", p.grad, f"d loss / d prompt_learner.{n} seen by the optimizer step")
            put(f"step.param.{n}", p, f"prompt_learner.{n} after one SGD step")
            put(f"step.momentum.{n}", tr.optim.state[p]["momentum_buffer"], f"SGD momentum of {n} after the step")
    info["step"] = {"loss": summary["loss"], "lr": tr.get_current_lr()}

    H.write_reference(
        args.output_dir,
        T,
        D,
        repo=REPO,
        commit=COMMIT,
        files=["trainers/cocoop.py", "clip/"],
        script="record_cocoop.py",
        fields={"config": CONFIG, "classnames": CLASSNAMES, "labels": LABELS, **info},
    )
    print(json.dumps(info, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
