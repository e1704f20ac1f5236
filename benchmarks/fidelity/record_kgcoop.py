"""Record reference numbers from the OFFICIAL KgCoOp code (htyao89/KgCoOp, `KgCoOp/trainers/kgcoop.py`) on the
fidelity suite's tiny CLIP, CPU, fp32: the eval-mode logits for a few images and class names with non-trivial
context vectors, and one `forward_backward` (loss, knowledge term, gradient, updated context, momentum) from that
state. `tests/methods/test_fidelity_kgcoop.py` checks the package against the numbers; the provenance is in
`tests/fixtures/fidelity_kgcoop/PROVENANCE.md`.

    python benchmarks/fidelity/record_kgcoop.py --output_dir tests/fixtures/fidelity_kgcoop
    # offline: --official_dir <an exported tree of the pinned commit>  (EXTRA_SITE=<folder with ftfy> if needed)

The official code is downloaded at run time (never stored here). `load_clip_to_cpu` is the one function replaced:
it downloads OpenAI's weights; here it builds the tiny CLIP with the official `clip.build_model`. The official
trainer calls it twice: for the trained model (made fp32 by `PREC=fp32`) and for the frozen branch's hand-crafted
text features, which it leaves in CLIP's fp16. Both are recorded: `official` (fp16 frozen branch, as the code runs)
and `fp32_frozen_branch` (the second model cast to fp32), the setting the package computes in.
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

REPO, COMMIT = "htyao89/KgCoOp", "c43ccc32c8739f64b165cfa205fcc6c0f5bb5b17"
CLASSNAMES = ["golden_retriever", "tabby cat", "sports_car", "pizza", "sunflower", "teapot"]
LABELS = [0, 3, 5, 2]
DATASET = "OxfordPets"  # CUSTOM_TEMPLATES: "a photo of a {}, a type of pet."
CONFIG = {
    # configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml + scripts/base2new_train.sh (N_CTX 4, CSC False, W 8.0,
    # CTP end), PREC fp32, no warm-up (the recorded step runs at the base learning rate), tiny CLIP at 32 px.
    "DATASET": {"NAME": DATASET, "SUBSAMPLE_CLASSES": "base", "NUM_SHOTS": 16},
    "INPUT": {"SIZE": [32, 32]},
    "MODEL": {"BACKBONE": {"NAME": "tiny random ViT (tests/fixtures/fidelity/tiny_clip)"}, "INIT_WEIGHTS": ""},
    "OPTIM": {"NAME": "sgd", "LR": 0.002, "MOMENTUM": 0.9, "WEIGHT_DECAY": 5e-4, "SGD_DAMPNING": 0,
              "SGD_NESTEROV": False, "STAGED_LR": False, "LR_SCHEDULER": "cosine", "MAX_EPOCH": 100,
              "WARMUP_EPOCH": 0},
    "TRAINER": {"NAME": "KgCoOp",
                "COOP": {"N_CTX": 4, "CTX_INIT": True, "CSC": False, "W": 8.0, "PREC": "fp32",
                         "CLASS_TOKEN_POSITION": "end"},
                "COCOOP": {"N_CTX": 16, "CTX_INIT": False, "PREC": "fp16"}},
    "SEED": 1,
}  # fmt: skip
VARIANTS = {
    "official": "frozen-branch CLIP left in fp16 as load_clip_to_cpu returns it (the official code as it runs)",
    "fp32_frozen_branch": "frozen-branch CLIP cast to fp32 (the package's precision)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="tests/fixtures/fidelity_kgcoop")
    parser.add_argument("--official_dir", default=None, help="An exported tree of the pinned commit (offline).")
    args = parser.parse_args(argv)
    H.prepare_env()
    folder = H.official_tree(REPO, COMMIT, args.official_dir, subdir="KgCoOp")
    clip, kg = H.import_official(folder, "kgcoop.py", "official_kgcoop")
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

    def build(variant: str) -> object:
        calls = []

        def load_clip_to_cpu(cfg: object) -> torch.nn.Module:
            model = clip.build_model({k: v.clone() for k, v in sd.items()})  # fp16, as the official loader returns
            calls.append(model)
            if variant == "fp32_frozen_branch" and len(calls) == 2:
                model.float()
            return model

        kg.load_clip_to_cpu = load_clip_to_cpu
        tr = object.__new__(kg.KgCoOp)
        tr.cfg = H.Cfg(deepcopy(CONFIG))
        tr.device = torch.device("cpu")
        tr.dm = types.SimpleNamespace(dataset=types.SimpleNamespace(classnames=list(CLASSNAMES)))
        tr.batch_idx, tr.num_batches = 0, 2  # not the epoch's last batch: no scheduler step inside the step
        H.set_random_seed(CONFIG["SEED"])
        tr.build_model()
        assert len(calls) == 2
        return tr

    info: dict = {"variants": {}}
    tr = build("fp32_frozen_branch")
    model = tr.model
    pl = model.prompt_learner
    info["trainable_parameters"] = [n for n, p in model.named_parameters() if p.requires_grad]
    info["prompted_texts"] = ["a photo of a " + c.replace("_", " ") + "." for c in CLASSNAMES]
    info["template"] = kg.CUSTOM_TEMPLATES[DATASET]
    info["template_texts"] = [kg.CUSTOM_TEMPLATES[DATASET].format(c.replace("_", " ")) for c in CLASSNAMES]
    assert torch.equal(clip.tokenize(info["prompted_texts"]), model.tokenized_prompts)
    put("tokenized_prompts", model.tokenized_prompts, "official ids of 'a photo of a <name>.' [n_cls,77]")
    put("template_ids", clip.tokenize(info["template_texts"]), "official ids of the frozen-branch texts [n_cls,77]")
    put("init.ctx", pl.ctx, "the context after CTX_INIT: token embeddings of 'a photo of a' [4,d_text]")
    put("logit_scale", model.logit_scale.exp(), "s = exp(logit_scale)")
    noise = torch.randn(pl.ctx.shape, generator=torch.Generator().manual_seed(4321)) * 0.05
    state = (pl.ctx.detach() + noise).clone()
    put("state.ctx", state, "the recorded state: init.ctx + N(0, 0.05^2) noise (seed 4321) [4,d_text]")

    cap = {}
    hooks = [
        model.image_encoder.register_forward_hook(lambda m, a, o: cap.__setitem__("img", o.detach().clone())),
        model.text_encoder.register_forward_hook(lambda m, a, o: cap.__setitem__("txt", o.detach().clone())),
    ]
    with torch.no_grad():
        pl.ctx.copy_(state)
        model.eval()
        logits = tr.model_inference(images)
    for h in hooks:
        h.remove()
    put("eval.logits", logits, "model_inference in eval mode: s<x, t_c> with the state's context [B,n_cls]")
    put("eval.image_features", cap["img"], "x before L2 normalisation (frozen image encoder) [B,E]")
    put("eval.text_features", cap["txt"], "t_c before L2 normalisation (prompted text encoder) [n_cls,E]")
    del tr, model, pl

    for variant, vdesc in VARIANTS.items():
        tr = build(variant)
        model, pl = tr.model, tr.model.prompt_learner
        with torch.no_grad():
            pl.ctx.copy_(state)
        model.train()
        log = {}

        def on_update(trainer: object, loss: torch.Tensor, log: dict = log) -> None:
            p = trainer.model.prompt_learner.ctx
            log.update(loss=loss.item(), grad=p.grad.detach().clone(), ctx=p.detach().clone(),
                       momentum=trainer.optim.state[p]["momentum_buffer"].detach().clone())  # fmt: skip

        H.TrainerX.on_update = staticmethod(on_update)
        with torch.no_grad():
            _, score = model(images)
        summary = tr.forward_backward({"img": images.clone(), "label": torch.tensor(LABELS)})
        H.TrainerX.on_update = None
        pre = f"step.{variant}."
        put(pre + "frozen_text_features", model.ori_embedding,
            f"h_c as the official code stores it (ori_embedding, L2-normalised, {model.ori_embedding.dtype}) "
            "[n_cls,E]")  # fmt: skip
        put(pre + "grad", log["grad"], f"{vdesc}: d loss / d ctx seen by the optimizer step [4,d_text]")
        put(pre + "ctx", log["ctx"], f"{vdesc}: ctx after one SGD step [4,d_text]")
        put(pre + "momentum", log["momentum"], f"{vdesc}: SGD momentum buffer after the step [4,d_text]")
        info["variants"][variant] = {
            "description": vdesc,
            "frozen_branch_dtype": str(model.ori_embedding.dtype),
            "loss": log["loss"],
            "score": score.item(),
            "loss_summary": summary,
            "lr": tr.get_current_lr(),
        }
        del tr, model, pl

    H.write_reference(
        args.output_dir,
        T,
        D,
        repo=REPO,
        commit=COMMIT,
        files=["KgCoOp/trainers/kgcoop.py", "KgCoOp/clip/"],
        script="record_kgcoop.py",
        fields={"config": CONFIG, "classnames": CLASSNAMES, "labels": LABELS, **info},
    )
    print(json.dumps(info, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
