"""PromptSRC (Khattak et al., ICCV 2023): deep independent text and vision prompts (IVLP) regularised by the frozen
model — self-regularising consistency of features and logits, Gaussian-weighted prompt aggregation over epochs, and
textual diversity (docs/methods/promptsrc.md).

Official code: https://github.com/muzairkhattak/PromptSRC (`trainers/promptsrc.py`). With x̃, t the prompted image
and class features, x the frozen image features, h̄_c the frozen class features averaged over 60 templates (the
mean of the unnormalised features, then normalised), all L2-normalised, s = exp(logit_scale), B images, C classes
and P feature dimensions:

    z   = s · x̃ tᵀ                 z_zs = s · x h̄ᵀ
    L   = CE(z, y) + λ_t · (1/CP) Σ |t − h̄| + λ_i · (1/BP) Σ |x̃ − x| + λ_kl · KL(softmax z_zs ‖ softmax z) / (BC)

(the KL is summed over the batch and the classes, then divided by B·C, as the official code does). After each epoch
e the prompts are added to a running sum with weight N(e; μ, σ²); at the end of training the prompts are replaced
by the weighted mean (GPA). Evaluation scores s<x̃, t>.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .base import Method, MethodConfig, TrainerState

__all__ = [
    "DIVERSITY_TEMPLATES",
    "PromptSRC",
    "PromptSRCConfig",
    "diversity_features",
    "gaussian_weight",
    "log_gaussian_weight",
]

# The 60 ImageNet templates of CLIP's prompt ensemble (openai/CLIP, notebooks/Prompt_Engineering_for_ImageNet.ipynb),
# the list PromptSRC averages for textual diversity (its trainers/imagenet_templates.py, IMAGENET_TEMPLATES).
DIVERSITY_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
)


def _number(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name}: expected {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


@dataclass
class PromptSRCConfig(MethodConfig):
    """PromptSRC's own knobs (prompt lengths, depth and init words are the run's `--n_ctx`, `--n_pro`,
    `--prompt_depth`, `--ctx_init`). Defaults: the official base-to-new config."""

    text_loss_weight: float = field(
        default=25.0, metadata={"help": "λ_t of the L1 term between t and the frozen h̄ (official TEXT_LOSS_WEIGHT)."}
    )
    image_loss_weight: float = field(
        default=10.0, metadata={"help": "λ_i of the L1 term between x̃ and the frozen x (official IMAGE_LOSS_WEIGHT)."}
    )
    logit_loss_weight: float = field(
        default=1.0,
        metadata={"help": "λ_kl of the KL term between the frozen and the prompted logits (fixed at 1 officially)."},
    )
    gpa: bool = field(
        default=True, metadata={"help": "Gaussian-weighted prompt aggregation over epochs, applied at the end."}
    )
    gpa_mean: float = field(
        default=15.0, metadata={"help": "μ of the Gaussian over epochs, 1-based (official GPA_MEAN)."}
    )
    gpa_std: float = field(default=1.0, metadata={"help": "σ of the Gaussian over epochs, > 0 (official GPA_STD)."})
    textual_diversity: bool = field(
        default=True,
        metadata={
            "help": "h̄ from the 60 ImageNet templates (official); false: from the adapter's own templates, averaged "
            "the same way."
        },
    )

    def __post_init__(self) -> None:
        for name in ("text_loss_weight", "image_loss_weight", "logit_loss_weight"):
            setattr(self, name, _number(name, getattr(self, name)))
        self.gpa_mean = _number("gpa_mean", self.gpa_mean)
        self.gpa_std = _number("gpa_std", self.gpa_std, positive=True)
        for name in ("gpa", "textual_diversity"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected true or false, got {getattr(self, name)!r}")


def log_gaussian_weight(epoch: int, mean: float, std: float) -> float:
    """log N(epoch; mean, std²), the log of the official `get_gauss` (epochs are 1-based)."""
    return -0.5 * ((epoch - mean) / std) ** 2 - math.log(std * math.sqrt(2 * math.pi))


def gaussian_weight(epoch: int, mean: float, std: float) -> float:
    """N(epoch; mean, std²), the official `get_gauss`."""
    return math.exp(log_gaussian_weight(epoch, mean, std))


@torch.no_grad()
def diversity_features(model: Any, class_names: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """h̄: (C, P), the frozen text features of every template averaged BEFORE normalisation, then L2-normalised
    (the official `fixed_embeddings`; the model's own template ensemble normalises each template first)."""
    total = None
    for template in templates:
        rows = model._tokenize(class_names, check_placeholders=False, template=template)
        feats = model._encode_ids_chunked(rows, None, normalize=False)
        total = feats if total is None else total + feats
    return F.normalize(total / len(templates), dim=-1)


class PromptSRC(Method):
    """IVLP's deep prompts, CE on s<x̃, t> plus the self-regularising terms, and GPA in the hooks."""

    summary = "deep independent prompts + L1/KL consistency with frozen CLIP, Gaussian prompt aggregation (GPA)"
    config_class = PromptSRCConfig
    coupled_branches = False

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        self._class_names: tuple[str, ...] | None = None
        self._frozen_text: dict[tuple, torch.Tensor] = {}
        self._gpa_sum: dict[str, torch.Tensor] = {}
        self._gpa_total = 0.0
        self._gpa_log_max: float | None = None

    def on_train_begin(self, model: Any, class_names: Sequence[str]) -> None:
        self._class_names = tuple(class_names)
        self._gpa_sum, self._gpa_total, self._gpa_log_max = {}, 0.0, None

    def forward_kwargs(self) -> dict[str, Any]:
        return {"return_zero_shot": True}  # x, the frozen image features

    def frozen_text_features(self, model: Any, class_names: Sequence[str]) -> torch.Tensor:
        """h̄ for `class_names` (C, P), computed once per class list and templates."""
        templates = DIVERSITY_TEMPLATES if self.config.textual_diversity else tuple(model.config.templates)
        key = (tuple(class_names), templates, id(model))
        if key not in self._frozen_text:
            self._frozen_text = {key: diversity_features(model, class_names, templates)}
        return self._frozen_text[key]

    def loss(self, output: Any, labels: torch.Tensor, model: Any) -> torch.Tensor:
        """CE + λ_t·L1(t, h̄) + λ_i·L1(x̃, x) + λ_kl·KL(z_zs ‖ z)/(B·C)."""
        if self._class_names is None:
            raise RuntimeError("promptsrc: the training step did not call on_train_begin with the class names")
        if output.frozen_image_embeds is None:
            raise ValueError(
                "promptsrc: the forward returned no frozen_image_embeds; call it with return_zero_shot=True"
            )
        cfg = self.config
        logits = output.logits
        h = self.frozen_text_features(model, self._class_names).to(output.text_embeds)
        x = output.frozen_image_embeds.detach()
        zero_shot = output.logit_scale * x @ h.t()
        ce = F.cross_entropy(logits, labels.to(logits.device))
        l1_text = F.l1_loss(output.text_embeds, h, reduction="mean")
        l1_image = F.l1_loss(output.image_embeds, x, reduction="mean")
        kl = (
            F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(zero_shot, dim=1), reduction="sum", log_target=True)
            / logits.numel()
        )
        return ce + cfg.text_loss_weight * l1_text + cfg.image_loss_weight * l1_image + cfg.logit_loss_weight * kl

    # ------------------------------------------------------------------ GPA
    def on_epoch_end(self, state: TrainerState) -> None:
        """Add the prompts after epoch e = state.epoch + 1 with weight N(e; μ, σ²). The sums are kept relative to the
        largest weight so far (log-sum-exp), so that far tails of the Gaussian, whose weights underflow even float64
        (the official weights then become 0/0), keep their exact ratios."""
        if not self.config.gpa:
            return
        log_w = log_gaussian_weight(state.epoch + 1, self.config.gpa_mean, self.config.gpa_std)
        prompts = {k: v.detach().double() for k, v in state.model.prompt_state_dict().items()}
        if self._gpa_log_max is None:
            self._gpa_log_max, self._gpa_total, self._gpa_sum = log_w, 1.0, prompts
            return
        top = max(self._gpa_log_max, log_w)
        old, new = math.exp(self._gpa_log_max - top), math.exp(log_w - top)
        self._gpa_sum = {k: self._gpa_sum[k] * old + prompts[k] * new for k in prompts}
        self._gpa_total = self._gpa_total * old + new
        self._gpa_log_max = top

    def on_train_end(self, state: TrainerState) -> None:
        """Replace the prompts by Σ_e w_e θ_e / Σ_e w_e over the epochs that ran (the official normalises over all
        MAX_EPOCH epochs; the two agree when the run completes)."""
        if not self.config.gpa or self._gpa_log_max is None:
            return
        state.model.load_prompt_state_dict({k: v / self._gpa_total for k, v in self._gpa_sum.items()}, source="GPA")
