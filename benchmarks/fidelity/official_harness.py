"""Running an official Dassl-based prompt learner on CPU, to record reference numbers for the fidelity tests.

Shared by `record_<method>.py`. The official code is fetched at run time (a tarball of the pinned commit from
GitHub, or `--official_dir` pointing at an exported tree of that commit) into a scratch folder and imported from
there; nothing of it is copied into this repository. What Dassl provides is replaced by small stand-ins with the
same behaviour for the calls the trainers make (config nodes, the trainer base class's zero-grad → backward → step,
SGD over a module's parameters, seeding); `.cuda()` is a no-op.

The tiny CLIP is the fidelity suite's (`tests/fixtures/fidelity/tiny_clip`, a transformers `CLIPModel`), mapped
back to OpenAI's state-dict layout (the inverse of the standard OpenAI → transformers mapping) so that the official
`clip.build_model` builds the same network.
"""

from __future__ import annotations

import importlib.util
import io
import os
import platform
import random
import subprocess
import sys
import tarfile
import tempfile
import types
import urllib.request
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
TINY_CLIP = ROOT / "tests" / "fixtures" / "fidelity" / "tiny_clip"


# ------------------------------------------------------------------------------------------------ official code
def official_tree(repo: str, commit: str, official_dir: str | None, subdir: str = "") -> Path:
    """The official code at `commit`: `official_dir` if given (an exported tree of that commit), else GitHub's
    tarball of the commit extracted into a temporary folder. Returns the folder holding `clip/` and `trainers/`."""
    if official_dir:
        root = Path(official_dir)
    else:
        url = f"https://codeload.github.com/{repo}/tar.gz/{commit}"
        data = urllib.request.urlopen(url, timeout=120).read()  # noqa: S310 (a fixed https URL)
        root = Path(tempfile.mkdtemp(prefix="official-"))
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(root, filter="data")
        (top,) = list(root.iterdir())
        root = top
    folder = root / subdir if subdir else root
    for need in ("clip", "trainers"):
        if not (folder / need).is_dir():
            raise SystemExit(f"{folder}: no {need}/ folder; is this {repo} at {commit}?")
    return folder


def import_official(folder: Path, trainer_file: str, module_name: str) -> tuple[Any, types.ModuleType]:
    """Import the official `clip` package and `trainers/<trainer_file>` with the Dassl stand-ins installed.
    torchvision is replaced by an empty placeholder while `clip` is imported (its preprocessing is never called)."""
    install_dassl_stubs()
    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self
    sys.path.insert(0, str(folder))
    placeholders = []
    try:
        import torchvision  # noqa: F401
    except ImportError:
        tv, tvt = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
        for n in ("Compose", "Resize", "CenterCrop", "ToTensor", "Normalize"):
            setattr(tvt, n, lambda *a, **k: None)
        tvt.InterpolationMode = types.SimpleNamespace(BICUBIC="bicubic")
        tv.transforms = tvt
        sys.modules["torchvision"], sys.modules["torchvision.transforms"] = tv, tvt
        placeholders += ["torchvision", "torchvision.transforms"]
    from clip import clip  # the official package, from `folder`

    for p in placeholders:
        del sys.modules[p]
    # `trainers` as a bare package (its __init__, which imports every trainer, is not run), so that the trainer's
    # relative imports (e.g. `.imagenet_templates`) resolve inside the official tree.
    package = types.ModuleType("trainers")
    package.__path__ = [str(folder / "trainers")]
    sys.modules["trainers"] = package
    name = f"trainers.{module_name}"
    spec = importlib.util.spec_from_file_location(name, folder / "trainers" / trainer_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return clip, module


# ------------------------------------------------------------------------------------------------ tiny CLIP
def tiny_clip_openai_state_dict() -> OrderedDict[str, torch.Tensor]:
    """The fidelity suite's tiny CLIP in OpenAI's layout (fp32)."""
    hf = {k: v.float() for k, v in load_file(str(TINY_CLIP / "model.safetensors")).items()}
    sd: OrderedDict[str, torch.Tensor] = OrderedDict()

    def tower(src: str, dst: str) -> None:
        i = 0
        while f"{src}encoder.layers.{i}.self_attn.q_proj.weight" in hf:
            s, d = f"{src}encoder.layers.{i}.", f"{dst}transformer.resblocks.{i}."
            sd[d + "attn.in_proj_weight"] = torch.cat([hf[s + f"self_attn.{n}_proj.weight"] for n in "qkv"])
            sd[d + "attn.in_proj_bias"] = torch.cat([hf[s + f"self_attn.{n}_proj.bias"] for n in "qkv"])
            sd[d + "attn.out_proj.weight"] = hf[s + "self_attn.out_proj.weight"]
            sd[d + "attn.out_proj.bias"] = hf[s + "self_attn.out_proj.bias"]
            for a, b in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2")):
                sd[d + f"{a}.weight"], sd[d + f"{a}.bias"] = hf[s + f"{b}.weight"], hf[s + f"{b}.bias"]
            for a, b in (("c_fc", "fc1"), ("c_proj", "fc2")):
                sd[d + f"mlp.{a}.weight"], sd[d + f"mlp.{a}.bias"] = hf[s + f"mlp.{b}.weight"], hf[s + f"mlp.{b}.bias"]
            i += 1

    sd["positional_embedding"] = hf["text_model.embeddings.position_embedding.weight"]
    sd["token_embedding.weight"] = hf["text_model.embeddings.token_embedding.weight"]
    tower("text_model.", "")
    sd["ln_final.weight"] = hf["text_model.final_layer_norm.weight"]
    sd["ln_final.bias"] = hf["text_model.final_layer_norm.bias"]
    sd["text_projection"] = hf["text_projection.weight"].t().contiguous()
    sd["visual.class_embedding"] = hf["vision_model.embeddings.class_embedding"]
    sd["visual.positional_embedding"] = hf["vision_model.embeddings.position_embedding.weight"]
    sd["visual.proj"] = hf["visual_projection.weight"].t().contiguous()
    sd["visual.conv1.weight"] = hf["vision_model.embeddings.patch_embedding.weight"]
    sd["visual.ln_pre.weight"] = hf["vision_model.pre_layrnorm.weight"]
    sd["visual.ln_pre.bias"] = hf["vision_model.pre_layrnorm.bias"]
    tower("vision_model.", "visual.")
    sd["visual.ln_post.weight"] = hf["vision_model.post_layernorm.weight"]
    sd["visual.ln_post.bias"] = hf["vision_model.post_layernorm.bias"]
    sd["logit_scale"] = hf["logit_scale"]
    return OrderedDict((k, v.clone().contiguous()) for k, v in sd.items())


# ------------------------------------------------------------------------------------------------ Dassl stand-ins
class Cfg:
    """Attribute access over a nested dict (yacs' CfgNode as the trainers read it)."""

    def __init__(self, d: dict) -> None:
        self._d = d
        for k, v in d.items():
            setattr(self, k, Cfg(v) if isinstance(v, dict) else v)

    def __contains__(self, key: str) -> bool:
        return key in self._d

    def to_dict(self) -> dict:
        return self._d


def set_random_seed(seed: int) -> None:
    """dassl.utils.set_random_seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


class _Registry:
    def register(self, obj: Any = None) -> Any:
        return (lambda o: o) if obj is None else obj


def compute_accuracy(output: torch.Tensor, target: torch.Tensor, topk: tuple = (1,)) -> list[torch.Tensor]:
    """dassl.metrics.compute_accuracy."""
    output = output[0] if isinstance(output, (tuple, list)) else output
    _, pred = output.topk(max(topk), 1, True, True)
    correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
    return [correct[:k].reshape(-1).float().sum(0, keepdim=True) * (100.0 / target.size(0)) for k in topk]


def build_optimizer(model: Any, optim_cfg: Cfg, param_groups: Any = None) -> torch.optim.Optimizer:
    """dassl.optim.build_optimizer, its 'sgd' branch without staged learning rates."""
    assert optim_cfg.NAME == "sgd" and not optim_cfg.STAGED_LR
    params = (
        param_groups if param_groups is not None else (model.parameters() if isinstance(model, nn.Module) else model)
    )
    return torch.optim.SGD(
        params,
        lr=optim_cfg.LR,
        momentum=optim_cfg.MOMENTUM,
        weight_decay=optim_cfg.WEIGHT_DECAY,
        dampening=optim_cfg.SGD_DAMPNING,
        nesterov=optim_cfg.SGD_NESTEROV,
    )


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: Cfg) -> Any:
    """dassl.optim.build_lr_scheduler, 'cosine' without warm-up (the recorded steps run at the base rate)."""
    assert optim_cfg.LR_SCHEDULER == "cosine" and optim_cfg.WARMUP_EPOCH == 0
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, float(optim_cfg.MAX_EPOCH))


class TrainerX:
    """The parts of Dassl's SimpleTrainer / TrainerX the trainers call. `on_update(trainer, loss)` is a logging hook
    run after every optimizer step (the official logic is untouched)."""

    on_update = None

    def register_model(self, name: str = "model", model: Any = None, optim: Any = None, sched: Any = None) -> None:
        if not hasattr(self, "_models"):
            self._models, self._optims, self._scheds = OrderedDict(), OrderedDict(), OrderedDict()
        self._models[name], self._optims[name], self._scheds[name] = model, optim, sched

    def get_model_names(self, names: Any = None) -> list[str]:
        if names is not None:
            return names if isinstance(names, list) else [names]
        return list(self._models.keys())

    def set_model_mode(self, mode: str = "train", names: Any = None) -> None:
        for name in self.get_model_names(names):
            self._models[name].train() if mode == "train" else self._models[name].eval()

    def update_lr(self, names: Any = None) -> None:
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise FloatingPointError("Loss is infinite or NaN!")

    def model_zero_grad(self, names: Any = None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names: Any = None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss: torch.Tensor, names: Any = None) -> None:
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)
        if self.on_update is not None:
            self.on_update(self, loss)

    def get_current_lr(self, names: Any = None) -> float:
        return self._optims[self.get_model_names(names)[0]].param_groups[0]["lr"]


def install_dassl_stubs() -> None:
    def unused(*a: Any, **k: Any) -> Any:
        raise RuntimeError("not used by the recording")

    mods = {n: types.ModuleType(n) for n in ("dassl", "dassl.engine", "dassl.metrics", "dassl.utils", "dassl.optim")}
    mods["dassl.engine"].TRAINER_REGISTRY = _Registry()
    mods["dassl.engine"].TrainerX = TrainerX
    mods["dassl.metrics"].compute_accuracy = compute_accuracy
    mods["dassl.utils"].load_pretrained_weights = unused
    mods["dassl.utils"].load_checkpoint = unused
    mods["dassl.utils"].set_random_seed = set_random_seed
    mods["dassl.optim"].build_optimizer = build_optimizer
    mods["dassl.optim"].build_lr_scheduler = build_lr_scheduler
    sys.modules.update(mods)
    for sub in ("engine", "metrics", "utils", "optim"):
        setattr(mods["dassl"], sub, mods[f"dassl.{sub}"])


def software() -> dict[str, str]:
    import transformers

    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    except OSError:
        rev = ""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "project_commit": rev.strip(),
        "torch_threads": str(torch.get_num_threads()),
    }


def prepare_env() -> None:
    """Deterministic CPU, one thread; `EXTRA_SITE` (optional) adds a folder with the official code's small
    dependencies (ftfy, regex) to the import path."""
    torch.set_num_threads(1)
    extra = os.environ.get("EXTRA_SITE")
    if extra:
        sys.path.insert(0, extra)


def write_reference(
    output_dir: str,
    tensors: dict[str, torch.Tensor],
    descriptions: dict[str, str],
    *,
    repo: str,
    commit: str,
    files: list[str],
    script: str,
    fields: dict[str, Any],
) -> None:
    """The recorded reference set: `official_reference.safetensors` (the tensors) and `official_reference.json`
    (where the numbers come from — repository, commit, files, the command — the software, each tensor's
    description, and the recording's own `fields`: config, class names, labels, measured scalars)."""
    import json

    from safetensors.torch import save_file

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "official_reference.safetensors"))
    meta = {
        "official": {"repository": f"https://github.com/{repo}", "commit": commit, "files": files},
        **fields,
        "command": f"python benchmarks/fidelity/{script} --output_dir {output_dir}",
        "software": software(),
        "tensors": descriptions,
    }
    (out / "official_reference.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
