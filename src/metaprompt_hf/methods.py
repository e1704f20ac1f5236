"""Method presets: one table that decides, per `--method`, which prompts exist, which loss trains them and whether
(and how) the meta step runs (docs/method.md §1-§3).

The baselines are configurations of the same model and loop. The loss is always the model's own
(`MetaPromptModel.forward(labels=...)`): L_AC when `coupled_branches` is on, CE on the prompted logits otherwise, so
no second loss implementation is keyed on the method name. A meta variant is a preset whose `meta` fixes some
fields of `MetaSettings` on top of the run's `--meta_*` arguments.

Adding a method: one `MethodPreset` line in `METHODS` (and, for a new meta-update rule, its dispatch in
`training/step.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .configuration_metaprompt import MetaPromptConfig
from .meta import MetaSettings


@dataclass(frozen=True)
class MethodPreset:
    """One method of the comparison.

    Attributes:
        name: the `--method` value.
        summary: one line for `--help` and the model card.
        text_prompts: whether the adapter has text prompts θ_t.
        vision_prompts: whether it has vision prompts θ_v.
        text_depth: layers with text prompts; None = `--prompt_depth` (every layer by default), 1 = CoOp's layer 0.
        coupled_branches: the model's loss and logits: L_AC over the coupled pairs (True) or CE on s<x̃, t> (False).
        meta: None = no meta step; otherwise the `MetaSettings` fields this preset fixes (empty: all from the
            run's `--meta_*` arguments).
        eval_logits: the output field scored at evaluation ("logits", or "logits_zero_shot" for frozen CLIP).
    """

    name: str
    summary: str
    text_prompts: bool = True
    vision_prompts: bool = True
    text_depth: int | None = None
    coupled_branches: bool = True
    meta: Mapping[str, Any] | None = None
    eval_logits: str = "logits"

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
        """The `MetaPromptConfig` of this method; `n_ctx` / `n_pro` are ignored for prompts it does not have."""
        if not self.trains:
            return MetaPromptConfig(n_ctx=0, n_pro=0, templates=list(templates))
        return MetaPromptConfig(
            n_ctx=n_ctx if self.text_prompts else 0,
            n_pro=n_pro if self.vision_prompts else 0,
            text_depth=self.text_depth or prompt_depth,
            vision_depth=prompt_depth,
            init_std=init_std,
            ctx_init=ctx_init,
            templates=list(templates),
            coupled_branches=self.coupled_branches,
        )

    def meta_settings(self, base: MetaSettings) -> MetaSettings | None:
        """The meta step of this method: `base` (from the run's arguments) with the preset's fixed fields, or None."""
        if self.meta is None:
            return None
        return dataclasses.replace(base, **dict(self.meta))


METHODS: dict[str, MethodPreset] = {
    p.name: p
    for p in (
        MethodPreset(
            "zeroshot", "frozen CLIP with the hand-crafted template(s)", False, False, eval_logits="logits_zero_shot"
        ),
        MethodPreset(
            "coop", "text context at layer 0, CE", vision_prompts=False, text_depth=1, coupled_branches=False
        ),
        MethodPreset(
            "ivlp", "deep independent text and vision prompts, CE on prompted logits", coupled_branches=False
        ),
        MethodPreset("metaprompt_no_meta", "MetaPrompt's prompts and L_AC, no meta step"),
        MethodPreset("metaprompt", "L_AC + the meta step as set by --meta_* (clean by default)", meta={}),
        MethodPreset(
            "metaprompt_second_order",
            "L_AC + the clean meta step with the exact second-order meta-gradient",
            meta={"mode": "clean", "second_order": True},
        ),
        MethodPreset(
            "metaprompt_mldg",
            "L_AC + MLDG's objective on the same episodes, applied by the main optimizer",
            meta={"mode": "mldg", "zero_grad_drift": False},
        ),
        MethodPreset(
            "metaprompt_mldg_second_order",
            "L_AC + MLDG's objective with the exact second-order gradient, applied by the main optimizer",
            meta={"mode": "mldg", "second_order": True, "zero_grad_drift": False},
        ),
        MethodPreset(
            "metaprompt_faithful",
            "L_AC + the reference's meta step as it ran (quirks 1-3 incl. torch 1.10's drift, docs/method.md §3.3)",
            meta={"mode": "faithful", "second_order": False, "zero_grad_drift": True},
        ),
    )
}


def get_method(name: str) -> MethodPreset:
    """The preset named `name` (raises `ValueError` listing the known ones)."""
    if name not in METHODS:
        raise ValueError(f"method: expected one of {list(METHODS)}, got {name!r}")
    return METHODS[name]
