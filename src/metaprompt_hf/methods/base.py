"""The `Method` interface: what one prompt learner decides (docs/architecture.md §4.2, docs/method.md §1-§4).

A method is an object, registered PEFT-style under its `--method` name (`methods/registry.py`). It declares

- its configuration: a `MethodConfig` dataclass of its own knobs (loss weights, ...), saved into the adapter's
  `metaprompt_config.json` under `method_config` with the method's name and a version, so that a reader older than
  the method refuses a field it does not know instead of ignoring it;
- the parameters it adds: the adapter it builds (`adapter_config`: which prompts exist, their depth, coupled
  branches or not) and the tensors the optimizer trains (`trainable_parameters`);
- how its logits are formed for training (`forward_kwargs`) and for evaluation (`eval_logits`);
- its loss (`loss`), computed from the model's output: the model returns features and logits, the method decides
  what to descend;
- its meta step (`meta`: none, or the `MetaSettings` fields it fixes);
- optional hooks: when a training step is built (`on_train_begin`, with the class names), after each optimizer
  step, at the end of each epoch and at the end of training (`on_step_end`, `on_epoch_end`, `on_train_end`), e.g. to
  average prompts over epochs.

Methods sit between the library core (the model, adapters, Hub I/O) and the training side: they import the core,
the training side imports them, and the core never imports a method.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..meta import MetaSettings
from ..modeling.configuration_metaprompt import MetaPromptConfig
from ..modeling.losses import adapter_loss

__all__ = ["Method", "MethodConfig", "TrainerState", "parse_method_args"]


@dataclass
class TrainerState:
    """Progress handed to callbacks and method hooks after every optimizer step (and at epoch / training end)."""

    global_step: int
    epoch: int
    max_steps: int
    loss: float
    lr: float
    meta_train_loss: float = math.nan
    meta_test_loss: float = math.nan
    model: Any = None  # the unwrapped MetaPromptModel, as transformers' callbacks receive it


@dataclass
class MethodConfig:
    """A method's own knobs. Subclasses add dataclass fields (with `metadata={"help": ...}`) and validate them in
    `__post_init__`; bump `version` whenever a field is added, so an older reader refuses the newer config.

    Saved in the adapter config as `{"name": <method>, "version": <version>, <field>: <value>, ...}`."""

    version: ClassVar[int] = 1

    def to_dict(self, name: str) -> dict[str, Any]:
        return {"name": name, "version": self.version, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "method_config") -> MethodConfig:
        """Strict: unknown fields and a version newer than this class are errors naming them."""
        data = dict(data)
        data.pop("name", None)
        version = data.pop("version", cls.version)
        if isinstance(version, bool) or not isinstance(version, int) or version > cls.version:
            raise ValueError(
                f"{source}: version {version!r} is newer than this metaprompt_hf understands ({cls.version}); "
                "upgrade metaprompt_hf to read it"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {unknown}; known fields are {sorted(known)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from None


def parse_method_args(text: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """`--method_args`: a JSON object (`'{"weight": 8.0}'`), `key=value` pairs separated by commas (values read as
    JSON when they parse, else as strings), or a mapping from a YAML config."""
    if text is None or text == "":
        return {}
    if isinstance(text, Mapping):
        return dict(text)
    text = str(text).strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"method_args: not a valid JSON object ({err})") from None
        if not isinstance(value, dict):
            raise ValueError(f"method_args: expected a JSON object, got {text!r}")
        return value
    out: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"method_args: expected key=value pairs separated by commas, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


class Method:
    """One prompt learner of the comparison. Subclass it, set the class attributes, override what differs, and
    register it with `metaprompt_hf.register_method(name, cls)`.

    Class attributes:
        summary: one line for `--help` and the model card.
        config_class: the method's `MethodConfig` subclass (its own knobs).
        text_prompts / vision_prompts: which prompts the adapter has.
        text_depth: layers with text prompts; None = `--prompt_depth` (every layer by default), 1 = CoOp's layer 0.
        coupled_branches: the adapter's logits: MetaPrompt's coupled pairs (L_AC) or s<x̃, t> (CE).
        meta: None = no meta step; otherwise the `MetaSettings` fields this method fixes (empty: all from the run's
            `--meta_*` arguments).
        eval_logits: the output field scored at evaluation ("logits", or "logits_zero_shot" for frozen CLIP).
        optimizer: the default optimizer of its runs: "sgd" (the run's momentum and weight decay) or "adamw"
            (Dassl's AdamW: betas (0.9, 0.999), the run's weight decay).

    Args:
        name: the registered name (`--method`).
        config: the method's knobs; default `config_class()`.
    """

    summary: ClassVar[str] = ""
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    text_prompts: ClassVar[bool] = True
    vision_prompts: ClassVar[bool] = True
    text_depth: ClassVar[int | None] = None
    coupled_branches: ClassVar[bool] = True
    meta: ClassVar[Mapping[str, Any] | None] = None
    eval_logits: ClassVar[str] = "logits"
    optimizer: ClassVar[str] = "sgd"

    def __init__(self, name: str, config: MethodConfig | Mapping[str, Any] | None = None) -> None:
        self.name = name
        if config is None:
            config = self.config_class()
        elif isinstance(config, Mapping):
            config = self.config_class.from_dict(config, source=f"method_args ({name})")
        elif not isinstance(config, self.config_class):
            raise TypeError(f"config: expected a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, config={self.config!r})"

    # ------------------------------------------------------------------ what it is
    @property
    def trains(self) -> bool:
        """Whether there is anything to train (zero-shot CLIP has no prompts)."""
        return self.text_prompts or self.vision_prompts

    @property
    def uses_meta_step(self) -> bool:
        return self.meta is not None

    def adapter_config(
        self,
        templates: Sequence[str],
        *,
        n_ctx: int,
        n_pro: int,
        prompt_depth: int | None = None,
        init_std: float = 0.02,
        ctx_init: str | None = None,
    ) -> MetaPromptConfig:
        """The adapter this method trains; `n_ctx` / `n_pro` are ignored for prompts it does not have. The method's
        own configuration is saved with it (`method_config`)."""
        saved = self.config.to_dict(self.name)
        if not self.trains:
            return MetaPromptConfig(n_ctx=0, n_pro=0, templates=list(templates), method_config=saved)
        return MetaPromptConfig(
            n_ctx=n_ctx if self.text_prompts else 0,
            n_pro=n_pro if self.vision_prompts else 0,
            text_depth=self.text_depth or prompt_depth,
            vision_depth=prompt_depth,
            init_std=init_std,
            ctx_init=ctx_init,
            templates=list(templates),
            coupled_branches=self.coupled_branches,
            method_config=saved,
        )

    def meta_settings(self, base: MetaSettings) -> MetaSettings | None:
        """The meta step of this method: `base` (from the run's arguments) with the method's fixed fields, or None."""
        if self.meta is None:
            return None
        return dataclasses.replace(base, **dict(self.meta))

    # ------------------------------------------------------------------ training
    def trainable_parameters(self, model: Any) -> list[torch.nn.Parameter]:
        """What the optimizer updates: the active adapter's prompts by default."""
        return model.prompt_parameters()

    def forward_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments of the training forward (e.g. `return_zero_shot=True`, `output_features=True`)
        that `loss` needs."""
        return {}

    def loss(self, output: Any, labels: torch.Tensor, model: Any) -> torch.Tensor:
        """The scalar training loss of one batch (docs/method.md §2).

        Args:
            output: the model's `MetaPromptOutput` for the batch (logits (B, C), features (B, P) / (C, P)).
            labels: (B,) class indices.
            model: the unwrapped `MetaPromptModel` (its prompts, for regularisers).
        """
        return adapter_loss(output, labels, model.config.coupled_branches)

    # ------------------------------------------------------------------ hooks (default: nothing)
    def on_train_begin(self, model: Any, class_names: Sequence[str]) -> None:
        """When a `TrainingStep` is built: the model and the training class names its losses index (e.g. to
        precompute frozen class features a regulariser compares with)."""

    def on_step_end(self, state: TrainerState) -> None:
        """After every optimizer step (and the meta step), before checkpointing."""

    def on_epoch_end(self, state: TrainerState) -> None:
        """After the last optimizer step of each epoch."""

    def on_train_end(self, state: TrainerState) -> None:
        """After the last optimizer step, before the adapter is saved (e.g. replace the prompts by an average)."""
