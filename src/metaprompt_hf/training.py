"""The training loop: Accelerate over a few-shot `datasets` split, the in-domain L_AC step and the meta step
(METHOD.md §3-§4), checkpoints, resume, evaluation and Hub upload.

`examples/train.py` is a thin wrapper around `parse_args` and `train`:

    accelerate launch examples/train.py --config examples/configs/b2n_vitb16.yaml --dataset_name ...

The baselines are configurations of the same loop (`--method`): `zeroshot` (frozen CLIP with the template),
`coop` (text context at layer 0, CE), `ivlp` (deep text+vision prompts, CE on prompted logits),
`metaprompt_no_meta` (L_AC only) and `metaprompt` (L_AC + meta step).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .configuration_metaprompt import MetaPromptConfig
from .data import (
    DataError,
    FewShotBatchSampler,
    ImageDataset,
    TrainTransform,
    collate,
    domain_counts,
    processor_size,
)
from .embedded import EMBEDDED_NAME, resolve_base_model
from .modeling_metaprompt import MetaPromptModel, load_clip, load_processor
from .protocols import PROTOCOLS, ProtocolData, evaluate_protocol, format_results, get_protocol, load_protocol_data
from .protocols.run import run_templates
from .step import MetaSettings, TrainingStep
from .utils import atomic_replace_dir, atomic_write_text

logger = logging.getLogger(__name__)

METHODS = ("metaprompt", "metaprompt_no_meta", "ivlp", "coop", "zeroshot")
PAPER_LEARNING_RATE = 0.0015  # METHOD.md §4
PAPER_CROP_SCALE_MIN = 0.08  # torchvision's RandomResizedCrop default, used by Dassl
# The embedded default departs from the paper's two data-dependent settings, as any new dataset would:
# - MetaPrompt's learning rate selected on the mini world's VALIDATION split by `benchmarks/mini_suite.py --tune`
#   (benchmarks/mini_hparams.json; grid 0.002 / 0.008 / 0.032), per protocol;
# - its images are 32 px, where a crop down to 8% of the area leaves about 9×9 pixels, so crops keep half the image.
EMBEDDED_LEARNING_RATE = {"base2new": 0.008, "dg": 0.002}
EMBEDDED_CROP_SCALE_MIN = 0.5
CHECKPOINT_PREFIX = "checkpoint-"


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass
class MetaPromptTrainingArguments:
    """Arguments of `train`. Names follow transformers' `TrainingArguments` where one exists; defaults are the
    paper's base-to-new setting (METHOD.md §4) on the embedded offline default."""

    # ------------------------------------------------------------------ model
    base_model: str = _help(
        "Base CLIP: a Hub id, a local folder, or 'embedded' (the small CLIP shipped in the package).",
        default="embedded",
    )
    base_model_revision: str | None = _help("Revision of the base model on the Hub.", default=None)
    method: str = _help(f"One of {METHODS}.", default="metaprompt")
    n_ctx: int | None = _help("Text prompt tokens; default 2 for base2new, 4 for dg (METHOD.md §4).", default=None)
    n_pro: int | None = _help("Vision prompt tokens; default 2 for base2new, 4 for dg.", default=None)
    prompt_depth: int | None = _help("Layers with their own prompts in each tower; default every layer.", default=None)
    init_std: float = _help("Std of the N(0, std²) prompt init.", default=0.02)
    ctx_init: str | None = _help(
        "Words whose embeddings initialise the layer-0 text prompts (CoOp style).", default=None
    )
    template: str | None = _help(
        "Template(s) of the frozen text branch, '|'-separated, each with '{}'; default: the dataset's preset (METHOD.md §8).",
        default=None,
    )
    class_chunk_size: int = _help("Classes per text-encoder call (bounds memory with many classes).", default=128)
    gradient_checkpointing: bool = _help("Recompute CLIP activations in backward to save memory.", default=False)
    # ------------------------------------------------------------------ data
    dataset_name: str = _help(
        "A Hub dataset id, a saved `datasets` folder, an image folder (<class>/<img> or <domain>/<class>/<img>), or miniworld:<name>.",
        default="miniworld:objects",
    )
    data_dir: str | None = _help(
        "A DATA/ folder in the CoOp / Dassl layouts; --dataset_name is then one of metaprompt_hf.readers.READERS "
        "(imagenet, caltech101, ..., pacs, vlcs, office_home, domainnet).",
        default=None,
    )
    dataset_config_name: str | None = _help("Config name of a Hub dataset.", default=None)
    train_split: str = _help("Split the few-shot training images are sampled from.", default="train")
    eval_split: str = _help(
        "Split evaluated after training (if absent: the train-split rows not used for training).", default="test"
    )
    image_column: str = _help("Image column.", default="image")
    label_column: str = _help("Label column (a ClassLabel, or strings, or ids with --class_names).", default="label")
    domain_column: str = _help("Domain column (needed for --protocol dg).", default="domain")
    class_names: str | None = _help(
        "Class names for label ids without names: comma-separated, or a .txt file with one per line.", default=None
    )
    protocol: str = _help(
        "'base2new' (train on base classes, test on base and new), 'dg' (leave one domain out), 'cross_dataset' or "
        "'imagenet_shift' (all classes; evaluate a saved adapter on other datasets).",
        default="base2new",
    )
    target_domain: str | None = _help("Held-out domain for --protocol dg.", default=None)
    shots: int = _help("Training images per class (base2new) or per class and source domain (dg).", default=16)
    allow_fewer_shots: bool = _help(
        "Train on fewer images when a class has fewer than --shots (logged) instead of stopping.", default=False
    )
    mix_domains: bool = _help("DG: interleave source domains so every batch holds at least two.", default=True)
    augment: bool = _help("Random resized crop + horizontal flip on training images (METHOD.md §4).", default=True)
    crop_scale_min: float | None = _help(
        "Smallest crop area fraction of the random resized crop; default 0.08 (the paper's), or 0.5 with the "
        "embedded base model (32-px images).",
        default=None,
    )
    max_eval_samples: int | None = _help(
        "Evaluate on at most this many images per evaluation set (seeded subsample).", default=None
    )
    cache_dir: str | None = _help("Cache folder for datasets and models.", default=None)
    # ------------------------------------------------------------------ meta step (METHOD.md §3)
    meta_step: float = _help("β: the meta update is θ ← θ0 − β·lr·g (reference META_STEP = 0.2).", default=0.2)
    meta_mode: str = _help(
        "The meta-update variant (docs/method.md §3.2): 'clean' (exact reset, plain-SGD inner step, outer update "
        "by hand), 'faithful' (the reference code's quirks 1-3, §3.3) or 'mldg' (MLDG's objective, its gradient "
        "through the main optimizer).",
        default="clean",
    )
    meta_inner_lr_scale: float = _help(
        "Inner step α = this × the current lr (clean and mldg; faithful's inner step is the optimizer's).", default=1.0
    )
    meta_mldg_in_domain: bool = _help(
        "mldg: one optimizer step on ∇L_AC + ∇F (True) or ∇F alone for the meta-updated prompt (False).",
        default=True,
    )
    meta_outer_reduction: str = _help(
        "'sum' (reference) or 'mean' of the held-out gradients over episodes.", default="sum"
    )
    meta_second_order: bool = _help(
        "Exact second-order meta-gradient instead of first order (clean mode).", default=False
    )
    meta_zero_grad_drift: bool = _help(
        "Faithful mode: reproduce torch 1.10's zero-filled grads (frozen prompt drifts).", default=False
    )
    meta_num_class_groups: int = _help("Class groups of the base-to-new split (reference: 2).", default=2)
    # ------------------------------------------------------------------ optimisation
    output_dir: str = _help("Where the adapter, checkpoints and results go.", default="outputs/metaprompt")
    overwrite_output_dir: bool = _help("Allow writing into a non-empty output_dir.", default=False)
    seed: int = _help("Seed of the few-shot sample, the prompts' init and the augmentations.", default=1)
    num_train_epochs: int = _help("Epochs (paper: 8 base2new, 6 dg).", default=8)
    max_steps: int = _help("If > 0, the number of optimizer steps, overriding num_train_epochs.", default=-1)
    per_device_train_batch_size: int = _help("Training batch per process (paper: 16 base2new, 32 dg).", default=16)
    per_device_eval_batch_size: int = _help("Evaluation batch per process.", default=100)
    learning_rate: float | None = _help(
        "Base learning rate; default 0.0015 (the paper's), or with the embedded base model the mini world's "
        "validation-selected rate (0.008 base2new, 0.002 dg; benchmarks/mini_hparams.json).",
        default=None,
    )
    weight_decay: float = _help("SGD weight decay.", default=5e-4)
    momentum: float = _help("SGD momentum.", default=0.9)
    warmup_epochs: int = _help("Constant warm-up epochs at --warmup_lr before the cosine (Dassl).", default=1)
    warmup_lr: float = _help("Learning rate during warm-up.", default=1e-5)
    lr_scheduler_type: str = _help("'cosine' (per epoch, as Dassl) or 'constant'.", default="cosine")
    gradient_accumulation_steps: int = _help(
        "Micro-batches per optimizer step; the meta step then runs on the whole accumulated batch.", default=1
    )
    mixed_precision: str | None = _help(
        "'no', 'fp16' or 'bf16'; default: what `accelerate launch` says.", default=None
    )
    checkpointing_steps: str | None = _help("Save a checkpoint every N optimizer steps, or 'epoch'.", default=None)
    resume_from_checkpoint: str | None = _help(
        "A checkpoint folder to resume from, or 'latest' (in output_dir).", default=None
    )
    logging_steps: int = _help("Log every N optimizer steps.", default=10)
    report_to: str = _help(
        "Trackers through Accelerate: 'none', 'all', or a comma list (e.g. 'tensorboard').", default="none"
    )
    do_eval: bool = _help("Evaluate after training.", default=True)
    dataloader_num_workers: int = _help("DataLoader worker processes.", default=0)
    push_to_hub: bool = _help("Push the final adapter and a model card to the Hub.", default=False)
    hub_model_id: str | None = _help("Hub repo id for --push_to_hub (default: the output_dir's name).", default=None)
    hub_private_repo: bool = _help("Create the Hub repo private.", default=False)
    hub_token: str | None = _help("Hub token (default: the logged-in one).", default=None)

    def __post_init__(self) -> None:
        def need(cond: bool, name: str, msg: str) -> None:
            if not cond:
                raise ValueError(f"{name}: {msg}, got {getattr(self, name)!r}")

        need(self.method in METHODS, "method", f"expected one of {METHODS}")
        need(self.protocol in PROTOCOLS, "protocol", f"expected one of {list(PROTOCOLS)}")
        need(self.meta_mode in ("clean", "faithful", "mldg"), "meta_mode", "expected 'clean', 'faithful' or 'mldg'")
        need(self.meta_inner_lr_scale > 0, "meta_inner_lr_scale", "expected > 0")
        need(
            self.meta_inner_lr_scale == 1.0 or self.meta_mode != "faithful",
            "meta_inner_lr_scale",
            "faithful mode's inner step is the optimizer's own step at the current lr",
        )
        need(self.meta_outer_reduction in ("sum", "mean"), "meta_outer_reduction", "expected 'sum' or 'mean'")
        need(self.lr_scheduler_type in ("cosine", "constant"), "lr_scheduler_type", "expected 'cosine' or 'constant'")
        need(self.mixed_precision in (None, "no", "fp16", "bf16"), "mixed_precision", "expected no, fp16 or bf16")
        need(self.shots >= 1, "shots", "expected >= 1")
        need(self.num_train_epochs >= 1, "num_train_epochs", "expected >= 1")
        need(self.per_device_train_batch_size >= 1, "per_device_train_batch_size", "expected >= 1")
        need(self.per_device_eval_batch_size >= 1, "per_device_eval_batch_size", "expected >= 1")
        need(self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps", "expected >= 1")
        embedded = self.base_model == EMBEDDED_NAME
        if self.learning_rate is None:
            self.learning_rate = (
                EMBEDDED_LEARNING_RATE.get(self.protocol, PAPER_LEARNING_RATE) if embedded else PAPER_LEARNING_RATE
            )
        if self.crop_scale_min is None:
            self.crop_scale_min = EMBEDDED_CROP_SCALE_MIN if embedded else PAPER_CROP_SCALE_MIN
        need(self.learning_rate > 0, "learning_rate", "expected > 0")
        need(self.warmup_epochs >= 0, "warmup_epochs", "expected >= 0")
        need(0 < self.crop_scale_min <= 1, "crop_scale_min", "expected in (0, 1]")
        need(self.meta_num_class_groups >= 2, "meta_num_class_groups", "expected >= 2")
        need(self.logging_steps >= 1, "logging_steps", "expected >= 1")
        need(self.meta_step >= 0, "meta_step", "expected >= 0")
        need(
            not (self.meta_second_order and self.meta_mode == "faithful"),
            "meta_second_order",
            "the second-order option exists in clean mode only",
        )
        if self.checkpointing_steps is not None:
            ok = (
                self.checkpointing_steps == "epoch"
                or str(self.checkpointing_steps).isdigit()
                and int(self.checkpointing_steps) > 0
            )
            need(ok, "checkpointing_steps", "expected a positive integer or 'epoch'")
            self.checkpointing_steps = str(self.checkpointing_steps)
        protocol = get_protocol(self.protocol)
        if protocol.needs_target_domain and self.target_domain is None:
            raise ValueError(f"target_domain: required with --protocol {self.protocol}")
        tokens = protocol.default_tokens
        if self.n_ctx is None:
            self.n_ctx = tokens
        if self.n_pro is None:
            self.n_pro = tokens
        need(self.n_ctx >= 1 or self.method == "zeroshot", "n_ctx", "expected >= 1")
        if self.method == "metaprompt" and protocol.meta_prompts == "vision":
            need(self.n_pro >= 1, "n_pro", f"{self.protocol} meta-updates the vision prompts, so expected >= 1")

    @property
    def uses_meta_step(self) -> bool:
        return self.method == "metaprompt"

    def meta_settings(self) -> MetaSettings | None:
        """How the meta step runs, or None without one (docs/method.md §3)."""
        if not self.uses_meta_step:
            return None
        vision = get_protocol(self.protocol).meta_prompts == "vision"
        return MetaSettings(
            target="vision" if vision else "text",
            mode=self.meta_mode,
            beta=self.meta_step,
            reduction=self.meta_outer_reduction,
            second_order=self.meta_second_order,
            zero_grad_drift=self.meta_zero_grad_drift,
            num_class_groups=self.meta_num_class_groups,
            chunk_size=self.per_device_train_batch_size if vision else None,
            inner_lr_scale=self.meta_inner_lr_scale,
            mldg_in_domain=self.meta_mldg_in_domain,
        )

    def adapter_config(self, templates: Sequence[str]) -> MetaPromptConfig:
        """The `MetaPromptConfig` of this method (the baselines are knobs of the same model)."""
        common = dict(
            init_std=self.init_std,
            ctx_init=self.ctx_init,
            templates=list(templates),
            text_depth=self.prompt_depth,
            vision_depth=self.prompt_depth,
        )
        if self.method == "zeroshot":
            return MetaPromptConfig(n_ctx=0, n_pro=0, templates=list(templates))
        if self.method == "coop":
            return MetaPromptConfig(**common | dict(n_ctx=self.n_ctx, n_pro=0, text_depth=1, coupled_branches=False))
        return MetaPromptConfig(**common, n_ctx=self.n_ctx, n_pro=self.n_pro, coupled_branches=self.method != "ivlp")


# ---------------------------------------------------------------------------------------------------- arguments
def parse_args(argv: Sequence[str] | None = None) -> MetaPromptTrainingArguments:
    """Command-line arguments with `HfArgumentParser`; `--config FILE.yaml` gives defaults that the command line
    overrides. Unknown YAML keys are an error naming the key and the file."""
    import yaml
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(MetaPromptTrainingArguments)
    parser.add_argument(
        "--config", default=None, help="YAML file of argument defaults; the command line overrides them."
    )
    config_path = None
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            config_path = argv[i + 1]
        elif arg.startswith("--config="):
            config_path = arg.split("=", 1)[1]
    if config_path is not None:
        if not os.path.isfile(config_path):
            raise FileNotFoundError(f"--config: no such file {config_path}")
        with open(config_path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ValueError(f"--config: {config_path} must hold a mapping of argument names to values")
        known = {f.name for f in dataclasses.fields(MetaPromptTrainingArguments)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"--config: unknown key(s) {unknown} in {config_path}")
        parser.set_defaults(**values)
    return parser.parse_args_into_dataclasses(args=argv)[0]


# ---------------------------------------------------------------------------------------------------- schedule
class EpochwiseSchedule:
    """Dassl's per-epoch schedule (METHOD.md §4): `warmup_epochs` at a constant `warmup_lr`, then cosine from the
    base lr with T_max = the number of epochs; the lr is constant within an epoch (the reference steps it once per
    epoch, quirk 9). Stepped per optimizer step here, so resuming mid-epoch needs no special case."""

    def __init__(self, optimizer: Any, args: MetaPromptTrainingArguments, steps_per_epoch: int, epochs: int) -> None:
        self.optimizer = optimizer
        self.args = args
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.epochs = epochs
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        epoch = step // self.steps_per_epoch
        a = self.args
        if epoch < a.warmup_epochs:
            return a.warmup_lr
        if a.lr_scheduler_type == "constant":
            return a.learning_rate
        return a.learning_rate * 0.5 * (1 + math.cos(math.pi * (epoch - a.warmup_epochs) / self.epochs))

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step_count)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [self.lr_at(self.step_count)]

    def state_dict(self) -> dict[str, int]:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step_count = int(state["step_count"])
        self._apply()


# ---------------------------------------------------------------------------------------------------- checkpoints
def _flatten_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, entry in state["state"].items():
        scalars["state"][str(pid)] = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars["state"][str(pid)][key] = value
    return tensors, scalars


def _unflatten_optimizer_state(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(pid): dict(entry) for pid, entry in scalars["state"].items()}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": scalars["param_groups"]}


def save_checkpoint(
    folder: str | os.PathLike,
    model: MetaPromptModel,
    optimizer: Any,
    schedule: EpochwiseSchedule,
    progress: dict[str, Any],
) -> None:
    """Write a resumable checkpoint: prompts (safetensors + JSON config), optimizer state (safetensors + JSON),
    schedule, progress and RNG state (JSON + safetensors) — never the frozen CLIP, never pickle. Written into a
    temporary folder that is renamed into place, so a crash leaves no half checkpoint."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, overwrite=True)
    tensors, scalars = _flatten_optimizer_state(optimizer.state_dict())
    save_file(tensors, str(tmp / "optimizer.safetensors"), {"format": "pt"})
    rng = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng |= {f"torch_cuda_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    save_file(rng, str(tmp / "rng_state.safetensors"))
    py_state = random.getstate()
    np_state = np.random.get_state()
    state = {
        "progress": progress,
        "schedule": schedule.state_dict(),
        "optimizer": scalars,
        "python_random": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy_random": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
    atomic_replace_dir(tmp, folder)


def load_checkpoint(
    folder: str | os.PathLike, model: MetaPromptModel, optimizer: Any, schedule: EpochwiseSchedule
) -> dict[str, Any]:
    """Restore what `save_checkpoint` wrote; returns the progress dict."""
    from safetensors.torch import load_file

    from .modeling_metaprompt import WEIGHTS_NAME

    folder = Path(folder)
    for name in (WEIGHTS_NAME, "optimizer.safetensors", "trainer_state.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"resume_from_checkpoint: {folder} has no {name}; not a checkpoint of this trainer"
            )
    model.load_prompt_state_dict(load_file(str(folder / WEIGHTS_NAME)), source=str(folder / WEIGHTS_NAME))
    state = json.loads((folder / "trainer_state.json").read_text())
    optimizer.load_state_dict(
        _unflatten_optimizer_state(load_file(str(folder / "optimizer.safetensors")), state["optimizer"])
    )
    schedule.load_state_dict(state["schedule"])
    rng = load_file(str(folder / "rng_state.safetensors"))
    torch.set_rng_state(rng["torch_cpu"])
    if torch.cuda.is_available():
        cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("torch_cuda_"))]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    py = state["python_random"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy_random"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    return state["progress"]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    folders = [
        p
        for p in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*")
        if p.is_dir() and p.name[len(CHECKPOINT_PREFIX) :].isdigit()
    ]
    return max(folders, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]), default=None)


# ---------------------------------------------------------------------------------------------------- the loop
@dataclass
class TrainerState:
    """Progress handed to callbacks after every optimizer step."""

    global_step: int
    epoch: int
    max_steps: int
    loss: float
    lr: float
    meta_train_loss: float = math.nan
    meta_test_loss: float = math.nan
    model: Any = None  # the unwrapped MetaPromptModel, as transformers' callbacks receive it


@dataclass
class TrainOutput:
    output_dir: str
    results: list[dict[str, Any]]
    global_step: int
    train_seconds: float
    model: MetaPromptModel | None = None


def check_output_dir(args: MetaPromptTrainingArguments) -> None:
    """Refuse a non-empty output_dir unless overwriting or resuming (checked before any work)."""
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"output_dir: {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite_output_dir and not args.resume_from_checkpoint:
        raise DataError(
            f"output_dir: {out} exists and is not empty; pass --overwrite_output_dir, a new --output_dir, or "
            "--resume_from_checkpoint"
        )


def _templates(args: MetaPromptTrainingArguments, dataset_name: str) -> list[str]:
    return run_templates(args.template, dataset_name)


def build_model(args: MetaPromptTrainingArguments, templates: Sequence[str], torch_seed: int) -> MetaPromptModel:
    """Base CLIP + processor + a fresh adapter of `args.method`, prompts initialised from `torch_seed`."""
    base = resolve_base_model(args.base_model)
    clip = load_clip(base, revision=args.base_model_revision, cache_dir=args.cache_dir)
    processor = load_processor(base, revision=args.base_model_revision, cache_dir=args.cache_dir)
    config = dataclasses.replace(
        args.adapter_config(templates), base_model_name_or_path=args.base_model, revision=args.base_model_revision
    )
    torch.manual_seed(torch_seed)
    model = MetaPromptModel(clip, config, processor, class_chunk_size=args.class_chunk_size)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def train(
    args: MetaPromptTrainingArguments,
    callbacks: Sequence[Callable[[TrainerState], None]] = (),
) -> TrainOutput:
    """Train (unless `method="zeroshot"`), save the adapter into `output_dir`, evaluate and optionally push.

    Each optimizer step: the in-domain step on L_AC (MetaPrompt) or CE (baselines) through Accelerate (DDP, mixed
    precision, gradient accumulation), then for `metaprompt` the meta step on the whole accumulated batch
    (METHOD.md §3), whose gradients are reduced across processes by hand.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    check_output_dir(args)
    log_with = None if args.report_to in ("none", "", None) else [s.strip() for s in args.report_to.split(",")]
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=log_with,
        project_dir=args.output_dir,
    )
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if accelerator.is_main_process else logging.WARNING,
    )
    resume_dir = None
    if args.resume_from_checkpoint:
        resume_dir = (
            latest_checkpoint(args.output_dir)
            if args.resume_from_checkpoint == "latest"
            else Path(args.resume_from_checkpoint)
        )
        if resume_dir is None or not resume_dir.is_dir():
            raise DataError(f"resume_from_checkpoint: no checkpoint found at {args.resume_from_checkpoint!r}")
    set_seed(args.seed)

    # -------------------------------------------------------------- data (fails fast on bad input)
    with accelerator.main_process_first():
        data, proto = load_protocol_data(args)
    if proto.train_rows is None and args.method != "zeroshot":
        raise DataError(f"dataset_name: {data.name} has no {args.train_split!r} split to train on (evaluation only)")
    if proto.skipped_corrupt:
        logger.warning(
            "skipped %d unreadable training candidate(s), e.g. %s",
            len(proto.skipped_corrupt),
            proto.skipped_corrupt[:3],
        )
    templates = _templates(args, args.dataset_name)
    model = build_model(args, templates, torch_seed=args.seed)
    processor = model.processor
    logger.info(
        "%s on %s (%s): %d training images over %d classes%s",
        args.method,
        data.name,
        args.protocol,
        len(proto.train_labels),
        len(proto.train_class_names),
        f", per source domain {counts}" if (counts := domain_counts(proto.train_domains, data.domain_names)) else "",
    )

    out_dir = Path(args.output_dir)
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        fewshot_file = out_dir / "fewshot_indices.json"
        if (
            resume_dir is not None
            and fewshot_file.is_file()
            and json.loads(fewshot_file.read_text())["rows"] != proto.fewshot["rows"]
        ):
            raise DataError(
                f"resume_from_checkpoint: the few-shot sample differs from {fewshot_file}; same data and seed?"
            )
        atomic_write_text(fewshot_file, json.dumps(proto.fewshot, indent=1))
        # Never write a secret next to an adapter that may be pushed or shared (TrainingArguments does the same).
        saved_args = dataclasses.asdict(args) | {"hub_token": "<HUB_TOKEN>" if args.hub_token else None}
        atomic_write_text(out_dir / "training_args.json", json.dumps(saved_args, indent=2))
    accelerator.wait_for_everyone()

    start = time.perf_counter()
    global_step = 0
    meta_ratios: list[float] = []  # ‖Δ_meta‖ / ‖Δ_in-domain‖ per optimizer step after warm-up
    if args.method != "zeroshot":
        global_step = _train_loop(args, accelerator, model, proto, data, resume_dir, callbacks, tqdm, meta_ratios)
    train_seconds = time.perf_counter() - start

    unwrapped = model
    if accelerator.is_main_process and args.method != "zeroshot":  # zero-shot CLIP learns nothing to save
        unwrapped.save_pretrained(out_dir, overwrite=True)
    accelerator.wait_for_everyone()

    results: list[dict[str, Any]] = []
    if args.do_eval:
        results = [evaluate_protocol(args, unwrapped, proto, data, processor, accelerator)]
        results[0]["meta_update_ratio"] = _median(meta_ratios) if args.uses_meta_step else None
        if accelerator.is_main_process:
            atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2))
            accelerator.print(format_results(results[0]))
    if args.push_to_hub and accelerator.is_main_process:
        repo_id = args.hub_model_id or out_dir.resolve().name
        unwrapped.push_to_hub(
            repo_id,
            private=args.hub_private_repo,
            token=args.hub_token,
            results=results,
            training=_card_training_settings(args, proto),
            datasets=[data.name],
        )
    accelerator.end_training()
    return TrainOutput(str(out_dir), results, global_step, train_seconds, unwrapped)


def _train_loop(
    args: MetaPromptTrainingArguments,
    accelerator: Any,
    model: MetaPromptModel,
    proto: ProtocolData,
    data: Any,
    resume_dir: Path | None,
    callbacks: Sequence[Callable[[TrainerState], None]],
    tqdm: Any,
    meta_ratios: list[float] | None = None,
) -> int:
    image_processor = model.processor.image_processor
    transform = None
    if args.augment:
        transform = TrainTransform(
            processor_size(image_processor),
            image_processor.image_mean,
            image_processor.image_std,
            scale=(args.crop_scale_min, 1.0),
        )
    dataset = ImageDataset(proto.train_rows, proto.train_labels, proto.train_domains, image_processor, transform)
    sampler = FewShotBatchSampler(
        len(dataset),
        args.per_device_train_batch_size,
        args.seed,
        domains=proto.train_domains if get_protocol(args.protocol).mixes_domains else None,
        mix_domains=args.mix_domains and get_protocol(args.protocol).mixes_domains,
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=args.dataloader_num_workers
    )
    params = model.prompt_parameters()
    # Plain SGD over the prompts only (METHOD.md §4: momentum 0.9, wd 5e-4, no dampening, no Nesterov).
    optimizer = torch.optim.SGD(params, lr=args.learning_rate, momentum=args.momentum, weight_decay=args.weight_decay)
    ddp_model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    unwrapped = accelerator.unwrap_model(ddp_model)

    steps_per_epoch = max(1, math.ceil(len(loader) / args.gradient_accumulation_steps))
    max_steps = args.max_steps if args.max_steps > 0 else args.num_train_epochs * steps_per_epoch
    epochs = math.ceil(max_steps / steps_per_epoch)
    schedule = EpochwiseSchedule(
        optimizer, args, steps_per_epoch, args.num_train_epochs if args.max_steps <= 0 else epochs
    )
    raw_optimizer = getattr(optimizer, "optimizer", optimizer)

    global_step = 0
    if resume_dir is not None:
        progress = load_checkpoint(resume_dir, unwrapped, raw_optimizer, schedule)
        global_step = int(progress["global_step"])
        accelerator.print(f"resumed from {resume_dir} at step {global_step}")
    if accelerator.trackers == [] and args.report_to not in ("none", "", None):
        accelerator.init_trackers(
            "metaprompt",
            config={k: v for k, v in dataclasses.asdict(args).items() if isinstance(v, (int, float, str, bool))},
        )

    protocol = get_protocol(args.protocol)
    train_step = TrainingStep(
        unwrapped,
        optimizer,
        proto.train_class_names,
        meta=args.meta_settings(),
        episodes_fn=lambda labels, domains, step: protocol.meta_episodes(
            labels, domains, proto, seed=args.seed, step=step, num_class_groups=args.meta_num_class_groups
        ),
        accelerator=accelerator,
        module=ddp_model,
    )
    bar = tqdm(total=max_steps, initial=global_step, disable=not accelerator.is_local_main_process, desc=args.method)
    ckpt_every = None if args.checkpointing_steps in (None, "epoch") else int(args.checkpointing_steps)
    ddp_model.train()
    for epoch in range(global_step // steps_per_epoch, epochs):
        batches: Any = loader
        skip = (global_step - epoch * steps_per_epoch) * args.gradient_accumulation_steps
        if skip > 0:
            batches = accelerator.skip_first_batches(loader, skip)
        # Accelerate's loaders push their own iteration count into the sampler when iterated; a loader created to
        # skip batches after a resume starts counting at 0, so the epoch is set explicitly on every layer.
        for holder in (loader, batches):
            if hasattr(holder, "set_epoch"):
                holder.set_epoch(epoch)
        sampler.set_epoch(epoch)
        for batch in batches:
            if global_step >= max_steps:
                break
            if batch["labels"].numel() == 0:
                continue
            with accelerator.accumulate(ddp_model):
                train_step.forward_backward(batch)
            if not accelerator.sync_gradients:
                continue
            result = train_step.update(step=global_step)
            lr = result.lr
            ratio = result.meta_update_ratio
            # after warm-up only: the warm-up lr (1e-5) makes both updates tiny and their ratio noise
            if meta_ratios is not None and epoch >= args.warmup_epochs and not math.isnan(ratio):
                meta_ratios.append(ratio)
            schedule.step()
            global_step += 1
            bar.update(1)
            state = TrainerState(
                global_step,
                epoch,
                max_steps,
                result.loss,
                lr,
                result.meta_train_loss,
                result.meta_test_loss,
                unwrapped,
            )
            if global_step % args.logging_steps == 0 or global_step == max_steps:
                logs = {"loss": result.loss, "lr": lr, "epoch": epoch}
                if args.uses_meta_step:
                    logs |= {
                        "meta_train_loss": result.meta_train_loss,
                        "meta_test_loss": result.meta_test_loss,
                        "meta_update_ratio": ratio,
                        "meta_episodes": result.meta.episodes if result.meta is not None else 0,
                        "meta_train_side": sum(tr for tr, _ in result.side_sizes),
                        "meta_test_side": sum(te for _, te in result.side_sizes),
                    }
                bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()})
                if accelerator.trackers:
                    accelerator.log(logs, step=global_step)
            at_epoch_end = global_step % steps_per_epoch == 0
            if (ckpt_every and global_step % ckpt_every == 0) or (
                args.checkpointing_steps == "epoch" and at_epoch_end
            ):
                if accelerator.is_main_process:
                    save_checkpoint(
                        Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{global_step}",
                        unwrapped,
                        raw_optimizer,
                        schedule,
                        {"global_step": global_step, "epoch": epoch},
                    )
                accelerator.wait_for_everyone()
            for callback in callbacks:
                callback(state)
        if global_step >= max_steps:
            break
    bar.close()
    ddp_model.eval()
    return global_step


def _median(values: Sequence[float]) -> float | None:
    """Median of the per-step meta/in-domain update-norm ratios (None when no step after warm-up had one)."""
    return float(np.median(values)) if values else None


def _card_training_settings(args: MetaPromptTrainingArguments, proto: ProtocolData) -> dict[str, Any]:
    return {
        "method": args.method,
        "protocol": args.protocol,
        "dataset": args.dataset_name,
        "shots": args.shots,
        "seed": args.seed,
        "epochs": args.num_train_epochs,
        "max_steps": args.max_steps,
        "batch size (per device)": args.per_device_train_batch_size,
        "learning rate": args.learning_rate,
        "optimizer": f"SGD momentum {args.momentum}, weight decay {args.weight_decay}",
        "schedule": f"{args.warmup_epochs} warm-up epoch(s) at {args.warmup_lr}, then {args.lr_scheduler_type}",
        "meta step": f"{args.meta_mode}, β={args.meta_step}, α={args.meta_inner_lr_scale}×lr, "
        f"{'second' if args.meta_second_order else 'first'} order, {args.meta_outer_reduction}"
        + (
            ""
            if args.meta_mode != "mldg"
            else f", in-domain step {'kept' if args.meta_mldg_in_domain else 'replaced'}"
        )
        if args.uses_meta_step
        else "none",
        "training classes": len(proto.train_class_names),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `examples/train.py`: parse, train, and turn bad input into a clear message and exit 2."""
    try:
        args = parse_args(argv)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        train(args)
    except (DataError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def evaluate_adapter(args: MetaPromptTrainingArguments, adapter_dir: str | os.PathLike) -> dict[str, Any]:
    """Evaluate a saved adapter on `args`' dataset and protocol (base / new / HM, or DG target accuracy).

    The seed (which fixes the few-shot rows excluded from evaluation when the dataset has no test split) and the
    method are read from the run's `training_args.json` when the adapter folder holds one."""
    adapter_dir = Path(adapter_dir)
    saved = adapter_dir / "training_args.json"
    if saved.is_file():
        run = json.loads(saved.read_text())
        args = dataclasses.replace(
            args,
            seed=run.get("seed", args.seed),
            method=run.get("method", args.method),
            shots=run.get("shots", args.shots),
        )
    data, proto = load_protocol_data(dataclasses.replace(args, allow_fewer_shots=True))
    if args.method == "zeroshot":
        model = build_model(args, _templates(args, args.dataset_name), torch_seed=args.seed)
    else:
        model = MetaPromptModel.from_pretrained(
            adapter_dir, base_model=resolve_base_model(args.base_model), class_chunk_size=args.class_chunk_size
        )
    return evaluate_protocol(args, model, proto, data, model.processor)
