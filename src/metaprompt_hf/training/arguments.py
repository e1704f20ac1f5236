"""The training arguments, split the way transformers' example scripts split them: the model (`ModelArguments`),
the data and protocol (`DataArguments`) and the optimisation, meta step and run (`TrainingArguments`).
`MetaPromptTrainingArguments` joins the three into the one flat object the loop, the checkpoints and
`training_args.json` use; `parse_args` reads the three groups from the command line and a YAML `--config`.

Every default lives once, here: the paper's values (docs/method.md §4) as field defaults, and the two that depend
on the run (the protocol's prompt tokens, the embedded base model's learning rate and crop scale, and the meta
variant's β) in `_resolve_defaults`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..constants import EMBEDDED_NAME
from ..data.sources import SOURCES
from ..meta import DEFAULT_META_STEP, META_SCALE_MAX, MetaSettings
from ..methods import METHODS, Method, get_method, parse_method_args
from ..modeling.configuration_metaprompt import INIT_STD_MAX, MetaPromptConfig
from ..plugins import load_plugins
from ..protocols import PROTOCOLS, get_protocol
from ..protocols.dg import EVAL_DOMAINS
from ..validation import check_number

PAPER_LEARNING_RATE = 0.0015  # docs/method.md §4
PAPER_CROP_SCALE_MIN = 0.08  # torchvision's RandomResizedCrop default, used by Dassl
# The embedded default departs from the paper's two data-dependent settings, as any new dataset would
# (departure D16 of docs/method.md §3.3):
# - MetaPrompt's learning rate selected on the mini world's VALIDATION split by `benchmarks/mini_suite.py --tune`
#   (benchmarks/mini_hparams.json `methods.metaprompt`), per protocol (`Protocol.embedded_learning_rate`);
# - its images are 32 px, where a crop down to 8% of the area leaves about 9×9 pixels, so crops keep half the image.
EMBEDDED_CROP_SCALE_MIN = 0.5
LEARNING_RATE_MAX = 10.0


def _help(text: str, aliases: Sequence[str] = (), **kw: Any) -> Any:
    return field(metadata={"help": text, "aliases": list(aliases)}, **kw)


@dataclass
class ModelArguments:
    """The base model and the adapter (method, prompt sizes, templates)."""

    _argument_group_name = "model"

    base_model: str = _help(
        "Base CLIP: a Hub id, a local folder, or 'embedded' (the small CLIP shipped in the package).",
        default="embedded",
    )
    base_model_revision: str | None = _help("Revision of the base model on the Hub.", default=None)
    method: str = _help(
        "One of " + ", ".join(f"{k} ({p.summary})" for k, p in METHODS.items()) + ", or one a --plugins module "
        "registers.",
        default="metaprompt",
    )
    method_args: str | None = _help(
        "The method's own knobs (its MethodConfig fields): a JSON object or key=value pairs separated by commas, "
        "e.g. 'weight=8.0'; a mapping in a YAML --config.",
        default=None,
    )
    plugins: str | None = _help(
        "Modules to import before the arguments are resolved (comma list, also $METAPROMPT_HF_PLUGINS): they "
        "register their own methods, protocols and backbones (docs/architecture.md §4).",
        default=None,
    )
    n_ctx: int | None = _help(
        "Text prompt tokens; default 2 for base2new, 4 for dg (docs/method.md §4).", default=None
    )
    n_pro: int | None = _help("Vision prompt tokens; default 2 for base2new, 4 for dg.", default=None)
    prompt_depth: int | None = _help("Layers with their own prompts in each tower; default every layer.", default=None)
    init_std: float = _help("Std of the N(0, std²) prompt init.", default=0.02)
    ctx_init: str | None = _help(
        "Words whose embeddings initialise the layer-0 text prompts (CoOp style).", default=None
    )
    template: str | None = _help(
        "Template(s) of the frozen text branch, '|'-separated, each with '{}'; default: the dataset's preset (docs/method.md §8).",
        default=None,
    )
    class_chunk_size: int = _help("Classes per text-encoder call (bounds memory with many classes).", default=128)
    truncate_long_texts: bool = _help(
        "Cut (with a warning) a template + class name text longer than the text encoder reads, instead of stopping.",
        default=False,
    )
    gradient_checkpointing: bool = _help("Recompute CLIP activations in backward to save memory.", default=False)


@dataclass
class DataArguments:
    """The dataset, the protocol and the few-shot sample."""

    _argument_group_name = "data"

    dataset_name: str = _help(
        "A Hub dataset id, a saved `datasets` folder, an image folder (<class>/<img> or <domain>/<class>/<img>), or miniworld:<name>.",
        default="miniworld:objects",
    )
    data_dir: str | None = _help(
        "A DATA/ folder in the CoOp / Dassl layouts; --dataset_name is then one of metaprompt_hf.data.readers.READERS "
        "(imagenet, caltech101, ..., pacs, vlcs, office_home, domainnet).",
        default=None,
    )
    download: bool = _help(
        "Fetch --dataset_name into --data_dir from the Hub first (python -m metaprompt_hf.download; skipped when "
        "already complete).",
        default=False,
    )
    dataset_config_name: str | None = _help("Config name of a Hub dataset.", default=None)
    train_dir: str | None = _help(
        "A folder of <class>/<image> training images, read by datasets' imagefolder (instead of --dataset_name's data).",
        default=None,
    )
    validation_dir: str | None = _help(
        "A folder of <class>/<image> validation images (with --train_dir).", default=None
    )
    train_split: str = _help("Split the few-shot training images are sampled from.", default="train")
    eval_split: str = _help(
        "Split evaluated after training (if absent: the train-split rows not used for training).", default="test"
    )
    eval_domains: str = _help(
        "--protocol dg: score the target domain's --eval_split images ('target', the reported result) or the source "
        "domains' ('sources': training-domain validation, to choose hyperparameters without the held-out domain).",
        default="target",
    )
    image_column: str = _help(aliases=["--image_column_name"], text="Image column.", default="image")
    label_column: str = _help(
        aliases=["--label_column_name"],
        text="Label column (a ClassLabel, or strings, or ids with --class_names).",
        default="label",
    )
    domain_column: str = _help(
        aliases=["--domain_column_name"], text="Domain column (needed for --protocol dg).", default="domain"
    )
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
    augment: bool = _help(
        "Random resized crop + horizontal flip on training images (docs/method.md §4).", default=True
    )
    crop_scale_min: float | None = _help(
        "Smallest crop area fraction of the random resized crop; default 0.08 (the paper's), or 0.5 with the "
        "embedded base model (32-px images).",
        default=None,
    )
    max_eval_samples: int | None = _help(
        "Evaluate on at most this many images per evaluation set (seeded subsample).", default=None
    )
    cache_dir: str | None = _help("Cache folder for datasets and models.", default=None)


@dataclass
class TrainingArguments:
    """The meta step, the optimisation, checkpoints, logging and Hub upload."""

    _argument_group_name = "training"

    meta_step: float | None = _help(
        "β: clean's outer update θ ← θ0 − β·lr·g, MLDG's held-out weight. Default per --meta_mode: clean 5.0 "
        "(validation-selected, benchmarks/results/ablation.md), faithful 0.2 (the reference's META_STEP), mldg 0.2.",
        default=None,
    )
    meta_mode: str = _help(
        "The meta-update variant (docs/method.md §3.2): 'clean' (exact reset, plain-SGD inner step), 'faithful' (the "
        "reference code's quirks 1-3, §3.3) or 'mldg' (MLDG's objective through the main optimizer).",
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
        "validation-selected rate (0.008 base2new, 0.128 dg; benchmarks/mini_hparams.json).",
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
    checkpoints_total_limit: int | None = _help(
        "Keep at most this many checkpoints in output_dir, deleting the oldest (default: keep all).", default=None
    )
    resume_from_checkpoint: str | None = _help(
        "A checkpoint folder to resume from, or 'latest' (in output_dir).", default=None
    )
    logging_steps: int = _help("Log every N optimizer steps.", default=10)
    report_to: str = _help(
        "Trackers through Accelerate: 'none', 'all', or a comma list (e.g. 'tensorboard').", default="none"
    )
    do_eval: bool = _help("Evaluate after training.", default=True)
    dataloader_num_workers: int = _help("DataLoader worker processes.", default=0)
    disable_tqdm: bool = _help(
        "Hide the run's progress bar (as transformers' TrainingArguments), e.g. under a command with its own.",
        default=False,
    )
    push_to_hub: bool = _help("Push the final adapter and a model card to the Hub.", default=False)
    hub_model_id: str | None = _help("Hub repo id for --push_to_hub (default: the output_dir's name).", default=None)
    hub_private_repo: bool = _help("Create the Hub repo private.", default=False)
    hub_token: str | None = _help("Hub token (default: the logged-in one).", default=None)


@dataclass
class MetaPromptTrainingArguments(TrainingArguments, DataArguments, ModelArguments):
    """Arguments of one run: every field of `ModelArguments`, `DataArguments` and `TrainingArguments`, validated
    together. Names follow transformers' `TrainingArguments` where one exists."""

    def __post_init__(self) -> None:
        def need(cond: bool, name: str, msg: str) -> None:
            if not cond:
                raise ValueError(f"{name}: {msg}, got {getattr(self, name)!r}")

        load_plugins(self.plugins, with_env=False)  # parse_args imported them already; a direct caller may not
        need(self.method in METHODS, "method", f"expected one of {list(METHODS)}")
        if isinstance(self.method_args, dict):  # from a YAML mapping: kept as one string in training_args.json
            self.method_args = json.dumps(self.method_args, sort_keys=True)
        self.build_method()  # unknown or invalid method_args fail here, naming the field
        need(self.protocol in PROTOCOLS, "protocol", f"expected one of {list(PROTOCOLS)}")
        need(self.meta_mode in ("clean", "faithful", "mldg"), "meta_mode", "expected 'clean', 'faithful' or 'mldg'")
        need(self.meta_outer_reduction in ("sum", "mean"), "meta_outer_reduction", "expected 'sum' or 'mean'")
        need(
            self.meta_inner_lr_scale == 1.0 or self.meta_mode != "faithful",
            "meta_inner_lr_scale",
            "faithful mode's inner step is the optimizer's own step at the current lr",
        )
        need(self.lr_scheduler_type in ("cosine", "constant"), "lr_scheduler_type", "expected 'cosine' or 'constant'")
        need(self.mixed_precision in (None, "no", "fp16", "bf16"), "mixed_precision", "expected no, fp16 or bf16")
        need(not self.download or bool(self.data_dir), "download", "needs --data_dir (where the dataset goes)")
        need(
            not self.download or self.dataset_name in SOURCES,
            "dataset_name",
            f"--download fetches one of {list(SOURCES)}",
        )
        need(self.eval_domains in EVAL_DOMAINS, "eval_domains", f"expected one of {list(EVAL_DOMAINS)}")
        need(
            not (self.push_to_hub and self.eval_domains == "sources"),
            "eval_domains",
            "a run scored on its source domains is a selection run, not a DG result; it is not pushed to the Hub",
        )
        self._resolve_defaults()
        self._check_numbers()
        need(
            not (self.meta_second_order and self.meta_mode == "faithful"),
            "meta_second_order",
            "the second-order option exists in clean and mldg modes only",
        )
        if self.checkpointing_steps is not None:
            ok = (
                self.checkpointing_steps == "epoch"
                or str(self.checkpointing_steps).isdigit()
                and int(self.checkpointing_steps) > 0
            )
            need(ok, "checkpointing_steps", "expected a positive integer or 'epoch'")
            self.checkpointing_steps = str(self.checkpointing_steps)
        if self.checkpoints_total_limit is not None:
            need(
                isinstance(self.checkpoints_total_limit, int) and self.checkpoints_total_limit >= 1,
                "checkpoints_total_limit",
                "expected a positive integer",
            )
        protocol = get_protocol(self.protocol)
        if protocol.needs_target_domain and self.target_domain is None:
            raise ValueError(f"target_domain: required with --protocol {self.protocol}")
        protocol.check_args(self)
        need(self.n_ctx >= 1 or not get_method(self.method).text_prompts, "n_ctx", "expected >= 1")
        if get_method(self.method).uses_meta_step and protocol.meta_prompts == "vision":
            need(self.n_pro >= 1, "n_pro", f"{self.protocol} meta-updates the vision prompts, so expected >= 1")

    def _check_numbers(self) -> None:
        """Every numeric field finite and in its range (`validation.check_number`), before any work starts."""
        ranges: dict[str, dict[str, Any]] = {
            # name: the allowed range. Learning rates past 10 only blow the prompts up (SGD on prompt tokens of
            # norm ~1; the selected rates are <= 0.032).
            "learning_rate": {"low": 0, "high": LEARNING_RATE_MAX, "low_open": True},
            "warmup_lr": {"low": 0, "high": LEARNING_RATE_MAX},
            "weight_decay": {"low": 0, "high": 1, "high_open": True},
            "momentum": {"low": 0, "high": 1, "high_open": True},
            "meta_step": {"low": 0, "high": META_SCALE_MAX},
            "meta_inner_lr_scale": {"low": 0, "high": META_SCALE_MAX, "low_open": True},
            "crop_scale_min": {"low": 0, "high": 1, "low_open": True},
            "init_std": {"low": 0, "high": INIT_STD_MAX, "low_open": True},
            "shots": {"low": 1, "integer": True},
            "num_train_epochs": {"low": 1, "integer": True},
            "max_steps": {"integer": True},
            "per_device_train_batch_size": {"low": 1, "integer": True},
            "per_device_eval_batch_size": {"low": 1, "integer": True},
            "gradient_accumulation_steps": {"low": 1, "integer": True},
            "warmup_epochs": {"low": 0, "integer": True},
            "meta_num_class_groups": {"low": 2, "integer": True},
            "logging_steps": {"low": 1, "integer": True},
            "seed": {"low": 0, "integer": True},
            "class_chunk_size": {"low": 1, "integer": True},
            "dataloader_num_workers": {"low": 0, "integer": True},
            "n_ctx": {"low": 0, "integer": True, "optional": True},
            "n_pro": {"low": 0, "integer": True, "optional": True},
            "prompt_depth": {"low": 1, "integer": True, "optional": True},
            "max_eval_samples": {"low": 1, "integer": True, "optional": True},
        }
        for name, limits in ranges.items():
            check_number(getattr(self, name), name, **limits)

    def _resolve_defaults(self) -> None:
        """The defaults that depend on the run: the protocol's prompt tokens (docs/method.md §4), the embedded
        base model's learning rate and crop scale (D16 of docs/method.md §3.3) and the meta variant's β (D17)."""
        embedded = self.base_model == EMBEDDED_NAME
        if self.learning_rate is None:
            tuned = get_protocol(self.protocol).embedded_learning_rate if self.protocol in PROTOCOLS else None
            self.learning_rate = tuned if embedded and tuned is not None else PAPER_LEARNING_RATE
        if self.crop_scale_min is None:
            self.crop_scale_min = EMBEDDED_CROP_SCALE_MIN if embedded else PAPER_CROP_SCALE_MIN
        if self.meta_step is None:  # the variant's β: a preset that fixes the mode decides it
            mode = (get_method(self.method).meta or {}).get("mode", self.meta_mode)
            self.meta_step = DEFAULT_META_STEP[mode]
        if self.protocol in PROTOCOLS:
            tokens = get_protocol(self.protocol).default_tokens
            self.n_ctx = tokens if self.n_ctx is None else self.n_ctx
            self.n_pro = tokens if self.n_pro is None else self.n_pro

    def build_method(self) -> Method:
        """A fresh `Method` of `method` with its knobs `method_args` (hooks may keep per-run state)."""
        return get_method(self.method, parse_method_args(self.method_args))

    @property
    def uses_meta_step(self) -> bool:
        return self.build_method().uses_meta_step

    def meta_settings(self) -> MetaSettings | None:
        """How the meta step runs, or None without one (docs/method.md §3): the method preset's fixed fields over
        the `--meta_*` arguments; the protocol decides which prompt is meta-updated."""
        vision = get_protocol(self.protocol).meta_prompts == "vision"
        base = MetaSettings(
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
        return self.build_method().meta_settings(base)

    def adapter_config(self, templates: Sequence[str]) -> MetaPromptConfig:
        """The `MetaPromptConfig` of this method (the baselines are knobs of the same model)."""
        return self.build_method().adapter_config(
            templates,
            n_ctx=self.n_ctx,
            n_pro=self.n_pro,
            prompt_depth=self.prompt_depth,
            init_std=self.init_std,
            ctx_init=self.ctx_init,
        )


def _join_negative_numbers(argv: list[str]) -> list[str]:
    """`--flag -1e-5` as `--flag=-1e-5`: argparse takes a value like -1e-5 for an option and stops with "expected
    one argument", so a negative number would never reach the range check that names the field."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and arg.startswith("-") and _is_number(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_args(argv: Sequence[str] | None = None) -> MetaPromptTrainingArguments:
    """Command-line arguments with `HfArgumentParser`; `--config FILE.yaml` gives defaults that the command line
    overrides. Unknown YAML keys are an error naming the key and the file."""
    values, _ = parse_arg_values(argv)
    return MetaPromptTrainingArguments(**values)


def read_arguments_yaml(path: str | os.PathLike, flag: str) -> dict[str, Any]:
    """A YAML file of training arguments as a mapping; errors name `flag`, the file and any unknown key."""
    import yaml

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{flag}: no such file {path}")
    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{flag}: {path} must hold a mapping of argument names to values")
    known = {f.name for f in dataclasses.fields(MetaPromptTrainingArguments)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{flag}: unknown key(s) {unknown} in {path}")
    return values


def parse_arg_values(
    argv: Sequence[str] | None = None, extra_groups: Sequence[type] = ()
) -> tuple[dict[str, Any], list[Any]]:
    """`parse_args` before validation: the three groups' values as given (the run-dependent defaults still None,
    so that a caller can build one `MetaPromptTrainingArguments` per method from them), and one instance of each
    dataclass in `extra_groups` read from the same command line (a command's own flags)."""
    from transformers import HfArgumentParser

    argv = _join_negative_numbers(list(sys.argv[1:] if argv is None else argv))
    load_plugins(_argv_value(argv, "--plugins"))  # before anything reads the registries
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments, *extra_groups))
    parser.add_argument(
        "--config", default=None, help="YAML file of argument defaults; the command line overrides them."
    )
    config_path = _argv_value(argv, "--config")
    if config_path is not None:
        values = read_arguments_yaml(config_path, "--config")
        load_plugins(values.get("plugins"), with_env=False)
        parser.set_defaults(**values)
    parsed = parser.parse_args_into_dataclasses(args=argv)  # the last one holds --config
    values: dict[str, Any] = {}
    for group in parsed[:3]:
        values |= {f.name: getattr(group, f.name) for f in dataclasses.fields(group)}
    return values, list(parsed[3 : 3 + len(extra_groups)])


def _argv_value(argv: Sequence[str], flag: str) -> str | None:
    """The value of `flag` in `argv` (`--flag value` or `--flag=value`; the last one wins), or None."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value
