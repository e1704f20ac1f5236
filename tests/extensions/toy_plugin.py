"""A plugin written the way a user writes one, outside the package: a toy method, a toy protocol and a toy backbone,
registered through `metaprompt_hf.register_*` only (docs/architecture.md §4). Imported by
`examples/train.py --plugins toy_plugin`; nothing inside `src/` knows of it.

- `toy_avg` (method): IVLP's prompts and CE plus its own L2 term on the prompts (weight `l2` from `--method_args`),
  and hooks that keep a running mean of the prompts after every step and put that mean into the adapter at the end
  of training (the shape of PromptSRC's prompt averaging).
- `all_classes` (protocol): few-shot training on every class, accuracy on every class of the evaluation split.
- `toy_dual` (backbone): a CLIP subclass registered as its own transformers model type, whose backbone counts the
  encoder-layer calls the prompt injection makes through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoModel, CLIPConfig, CLIPModel

import metaprompt_hf
from metaprompt_hf.backbones.clip import CLIPBackbone
from metaprompt_hf.evaluation import evaluate_set
from metaprompt_hf.methods import Method, MethodConfig, TrainerState
from metaprompt_hf.protocols import EvalSet, Protocol, ProtocolData
from metaprompt_hf.protocols.base import cap, check_common, class_groups, eval_rows, sample_shots

# What the hooks saw, for the tests to check against the saved adapter.
EVENTS: list[tuple[str, int]] = []
STEP_PROMPTS: list[dict[str, torch.Tensor]] = []
LAYER_CALLS = {"count": 0}


# ---------------------------------------------------------------------------------------------------- method
@dataclass
class ToyAvgConfig(MethodConfig):
    l2: float = field(default=0.1, metadata={"help": "Weight of the L2 penalty on the prompts."})

    def __post_init__(self) -> None:
        if not (isinstance(self.l2, (int, float)) and self.l2 >= 0):
            raise ValueError(f"l2: expected a number >= 0, got {self.l2!r}")


class ToyAvg(Method):
    summary = "IVLP + an L2 term on the prompts, prompts averaged over steps at the end"
    config_class = ToyAvgConfig
    coupled_branches = False

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        self._sum: dict[str, torch.Tensor] = {}
        self._count = 0

    def loss(self, output: Any, labels: torch.Tensor, model: Any) -> torch.Tensor:
        l2 = sum(p.pow(2).sum() for p in model.prompt_parameters())
        return super().loss(output, labels, model) + self.config.l2 * l2

    def on_step_end(self, state: TrainerState) -> None:
        prompts = {n: getattr(state.model, n).detach().clone() for n in ("text_prompts", "vision_prompts")}
        STEP_PROMPTS.append(prompts)
        for name, value in prompts.items():
            self._sum[name] = self._sum.get(name, 0) + value
        self._count += 1
        EVENTS.append(("step", state.global_step))

    def on_epoch_end(self, state: TrainerState) -> None:
        EVENTS.append(("epoch", state.global_step))

    def on_train_end(self, state: TrainerState) -> None:
        EVENTS.append(("train_end", state.global_step))
        with torch.no_grad():
            for name, total in self._sum.items():
                getattr(state.model, name).copy_(total / self._count)


# ---------------------------------------------------------------------------------------------------- protocol
class AllClassesProtocol(Protocol):
    name = "all_classes"
    metric_keys = ("accuracy",)
    default_tokens = 2
    meta_prompts = "text"

    def prepare(self, data: Any, *, shots: int, seed: int, train_split: str = "train", eval_split: str = "test",
                target_domain: str | None = None, allow_fewer_shots: bool = False,
                max_eval_samples: int | None = None) -> ProtocolData:  # fmt: skip
        check_common(data, shots, train_split)
        train = data.splits[train_split]
        labels = np.asarray(train["label"])
        names = data.class_names
        groups = class_groups(labels, range(len(names)))
        chosen, corrupt = sample_shots(train, groups, shots, seed, allow_fewer_shots, lambda k: names[k[0]])
        rows, eval_name = eval_rows(data, eval_split, train_split, chosen)
        rows = rows.select(cap(list(range(len(rows))), max_eval_samples, seed))
        return ProtocolData(
            train_rows=train.select(chosen),
            train_labels=[int(labels[i]) for i in chosen],
            train_domains=None,
            train_class_names=list(names),
            eval_sets={"all": EvalSet(rows, list(names), [int(x) for x in rows["label"]])},
            fewshot={
                "split": train_split,
                "protocol": self.name,
                "seed": seed,
                "shots": shots,
                "rows": chosen,
                "eval_split": eval_name,
            },  # fmt: skip
            skipped_corrupt=corrupt,
        )

    def evaluate(self, model: Any, proto: ProtocolData, data: Any, image_processor: Any, **kw: Any) -> dict:
        scored = evaluate_set(model, proto.eval_sets["all"], image_processor, **kw)
        return {"accuracy": scored["accuracy"], "n_images": scored["n"], "skipped_images": scored["skipped"]}

    def describe(self, entry: Mapping[str, Any]) -> str:
        return f"All classes {entry['accuracy']:.2f}"


# ---------------------------------------------------------------------------------------------------- backbone
class ToyDualConfig(CLIPConfig):
    model_type = "toy_dual"


class ToyDualModel(CLIPModel):
    config_class = ToyDualConfig


class ToyDualBackbone(CLIPBackbone):
    model_class = ToyDualModel

    def with_layer_hidden(self, args: tuple, kwargs: dict, fn: Any) -> tuple[tuple, dict]:
        LAYER_CALLS["count"] += 1
        return super().with_layer_hidden(args, kwargs, fn)


AutoConfig.register("toy_dual", ToyDualConfig, exist_ok=True)
AutoModel.register(ToyDualConfig, ToyDualModel, exist_ok=True)
metaprompt_hf.register_method("toy_avg", ToyAvg)
metaprompt_hf.register_protocol("all_classes", AllClassesProtocol)
metaprompt_hf.register_backbone("toy_dual", ToyDualBackbone)
