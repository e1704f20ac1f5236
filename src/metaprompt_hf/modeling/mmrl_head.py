"""MMRL's adapter head: a shared representation space projected into both towers as inserted tokens, and the
representation logits (docs/methods/mmrl.md).

Official code: https://github.com/yunncheng/MMRL/blob/27d8821/trainers/mmrl.py and `clip/model_mmrl.py`. With R the
n learned representation tokens (n, rep_dim), F^t_k, F^v_k one Linear(rep_dim, d) per representation layer
l_k (`rep_layers`, 1-based), the class names in the hand-crafted template, and s = 100 (fixed in the official code):

    before layer l_0 the tokens F_0(R) are inserted after the first token (start-of-text / CLS) of each tower, and
    replace those rows before each later layer l_k with F_k(R); the text tower is causal over the longer sequence
    t_c   = the text tower's end-of-text feature                                  (C, P)
    x̃     = the CLS feature (the base model's projection)                          (B, P)
    x̃_rep = mean_i post_layernorm(rows 1..n of the last layer) · proj_rep          (B, P), proj_rep (d_vision, P)
    z = s<x̃, t>,   z_rep = s<x̃_rep, t>,   z_fused = α z + (1 − α) z_rep

Evaluation is decoupled: the fused logits on the classes the adapter was trained on (inside
`heads.seen_classes()`), the class-token logits z on any other class names (the default). The loss (also what
`forward(labels=)` returns), with x and h the frozen image and template features:

    L = α CE(z, y) + (1 − α) CE(z_rep, y) + λ (1 − mean_b cos(x̃_b, x_b)) + λ (1 − mean_c cos(t_c, h_c))

The head is CLIP's (transformers `CLIPModel`): its vision pass reads the rows of `last_hidden_state` and the
`post_layernorm` of CLIP's vision model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..inputs.checks import check_class_names
from .configuration_metaprompt import MetaPromptConfig, check_templates
from .heads import AdapterHead, classes_seen, register_adapter_head
from .injection import inserted_tokens_in_context, install_insert_hooks
from .outputs import MetaPromptOutput

__all__ = ["LOGIT_SCALE", "MMRLHead", "mmrl_loss", "mmrl_settings"]

#: The official logits are `100. * image_features @ text_features.t()`, not CLIP's exp(logit_scale).
LOGIT_SCALE = 100.0


def mmrl_settings(config: MetaPromptConfig) -> dict[str, Any]:
    """MMRL's knobs from `config.method_config` (written by `methods/mmrl.py`, checked again here as a file may be
    edited by hand): `alpha`, `reg_weight`, `n_rep_tokens`, `rep_dim` and `rep_layers` (1-based, increasing; None =
    the upper half ⌊L/2⌋ … L of the shallower tower, 6 … 12 for ViT-B/16 as in the official configs)."""
    mc = config.method_config or {}
    depth = min(d for d in (config.text_num_layers, config.vision_num_layers) if d) if config.text_num_layers else 0

    def number(key: str, default: float, low: float, high: float) -> float:
        value = mc.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"method_config.{key}: expected a finite number, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"method_config.{key}: expected {low} <= value <= {high}, got {value!r}")
        return float(value)

    def count(key: str, default: int) -> int:
        value = mc.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"method_config.{key}: expected an integer >= 1, got {value!r}")
        return value

    layers = mc.get("rep_layers")
    if layers is None:
        layers = list(range(max(1, depth // 2), depth + 1)) if depth else []
    if (
        not isinstance(layers, (list, tuple))
        or not layers
        or any(isinstance(v, bool) or not isinstance(v, int) for v in layers)
        or list(layers) != sorted(set(layers))
        or layers[0] < 1
        or (depth and layers[-1] > depth)
    ):
        raise ValueError(
            f"method_config.rep_layers: expected increasing layer numbers in 1..{depth or 'the depth'} (the "
            f"shallower tower's layers), got {mc.get('rep_layers')!r}"
        )
    return {
        "alpha": number("alpha", 0.7, 0.0, 1.0),
        "reg_weight": number("reg_weight", 1.0, 0.0, math.inf),
        "n_rep_tokens": count("n_rep_tokens", 5),
        "rep_dim": count("rep_dim", 512),
        "rep_layers": [int(v) for v in layers],
    }


class MMRLHead(AdapterHead):
    """The representation tokens, their per-layer projections into each tower and `proj_rep`; runs the adapter's
    forward itself (`forms_output`). Tensor names are the official ones (`compound_rep_tokens`,
    `compound_rep_tokens_r2vproj.<k>`, `compound_rep_tokens_r2tproj.<k>`, `proj_rep`)."""

    forms_output = True

    def __init__(self, config: MetaPromptConfig, backbone: Any) -> None:
        super().__init__(config, backbone)
        if backbone.model_type != "clip":
            raise ValueError(f"mmrl: the head reads CLIP's vision rows; base model type {backbone.model_type!r}")
        if config.n_ctx or config.n_pro or config.coupled_branches:
            raise ValueError(
                f"mmrl: the adapter has no prompts of its own and no coupled branches (n_ctx 0, n_pro 0, "
                f"coupled_branches false); got n_ctx {config.n_ctx}, n_pro {config.n_pro}, coupled_branches "
                f"{config.coupled_branches}"
            )
        settings = mmrl_settings(config)
        self.alpha, self.reg_weight = settings["alpha"], settings["reg_weight"]
        self.layers = [v - 1 for v in settings["rep_layers"]]  # 0-based layer indices
        n, rep_dim = settings["n_rep_tokens"], settings["rep_dim"]
        d_text, d_vision = backbone.text_hidden_size, backbone.vision_hidden_size
        self.compound_rep_tokens = nn.Parameter(torch.empty(n, rep_dim))
        nn.init.normal_(self.compound_rep_tokens, std=0.02)
        # `_get_clones` deep-copies one initialised Linear per layer: they start equal and are trained apart.
        single_v, single_t = nn.Linear(rep_dim, d_vision), nn.Linear(rep_dim, d_text)
        self.compound_rep_tokens_r2vproj = nn.ModuleList([copy.deepcopy(single_v) for _ in self.layers])
        self.compound_rep_tokens_r2tproj = nn.ModuleList([copy.deepcopy(single_t) for _ in self.layers])
        # CLIP's own init of a projection (`scale * randn(width, output_dim)`); the checkpoint has none to load.
        width = backbone.model.config.projection_dim
        self.proj_rep = nn.Parameter(d_vision**-0.5 * torch.randn(d_vision, width))
        install_insert_hooks(backbone)

    @classmethod
    def expected_shapes(cls, config: MetaPromptConfig) -> dict[str, tuple[int | None, ...]]:
        settings = mmrl_settings(config)
        n, dim = settings["n_rep_tokens"], settings["rep_dim"]
        out: dict[str, tuple[int | None, ...]] = {
            "compound_rep_tokens": (n, dim),
            "proj_rep": (config.vision_hidden_size, None),
        }
        for k in range(len(settings["rep_layers"])):
            for tower, width in (("r2v", config.vision_hidden_size), ("r2t", config.text_hidden_size)):
                out[f"compound_rep_tokens_{tower}proj.{k}.weight"] = (width, dim)
                out[f"compound_rep_tokens_{tower}proj.{k}.bias"] = (width,)
        return out

    def representation_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The projected tokens of every representation layer: text (L, n, d_text) and vision (L, n, d_vision)."""
        r = self.compound_rep_tokens
        text = torch.stack([f(r) for f in self.compound_rep_tokens_r2tproj])
        vision = torch.stack([f(r) for f in self.compound_rep_tokens_r2vproj])
        return text, vision

    def _version(self) -> tuple:
        # `_version` counts in-place updates (optimizer steps), so cached class features are never stale.
        return tuple((p.data_ptr(), p._version, str(p.device)) for p in self.parameters())

    def text_features(
        self, model: Any, class_names: Sequence[str], templates: Sequence[str], tokens: torch.Tensor, uid: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(t (C, P) L2-normalised, the features before normalisation (C, P) or None with several templates). Each
        template's features are normalised, averaged and renormalised, as the frozen branch's (`encode_templates`);
        the official text is one template. Cached per class list and parameter version without grad."""
        cacheable = not torch.is_grad_enabled()
        key = ("mmrl", tuple(class_names), tuple(templates), uid, self._version())
        if cacheable:
            cached = model._cache_get(model._feature_cache, key)
            if cached is not None:
                return cached
        feats = []
        for template in templates:
            rows = model._tokenize(class_names, check_placeholders=False, template=template)
            with inserted_tokens_in_context(tokens, None, self.layers):
                feats.append(model._encode_ids_chunked(rows, None, normalize=False))
        if len(feats) == 1:
            result = (F.normalize(feats[0], dim=-1), feats[0])
        else:
            result = (F.normalize(sum(F.normalize(f, dim=-1) for f in feats), dim=-1), None)
        if cacheable:
            model._cache_put(model._feature_cache, key, result, 16)
        return result

    def image_features(
        self, model: Any, pixel_values: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x̃, x̃_rep), (B, P) each, not normalised, fp32: the CLS feature and the representation feature of the
        pass with the inserted tokens."""
        clip = model.base_model
        n = tokens.shape[1]
        with inserted_tokens_in_context(None, tokens, self.layers):
            out = clip.vision_model(pixel_values=pixel_values.to(device=model.device, dtype=model.dtype))
        cls = clip.visual_projection(out.pooler_output).float()
        rows = clip.vision_model.post_layernorm(out.last_hidden_state[:, 1 : 1 + n]).float()
        return cls, rows.mean(dim=1) @ self.proj_rep

    def output(
        self,
        model: Any,
        pixel_values: torch.Tensor,
        class_names: Sequence[str],
        labels: torch.Tensor | None,
        *,
        adapter_name: str,
        frozen_image_embeds: torch.Tensor | None = None,
        return_zero_shot: bool = False,
        templates: Sequence[str] | None = None,
        output_features: bool = False,
    ) -> MetaPromptOutput:
        check_class_names(class_names)
        adapter = model._adapter(adapter_name)
        templates = adapter.config.templates if templates is None else check_templates(templates)
        text_tokens, vision_tokens = self.representation_tokens()
        t, t_raw = self.text_features(model, class_names, templates, text_tokens, adapter.uid)
        img, img_rep = self.image_features(model, pixel_values, vision_tokens)
        x_tilde, x_rep = F.normalize(img, dim=-1), F.normalize(img_rep, dim=-1)
        out = MetaPromptOutput(logit_scale=torch.tensor(LOGIT_SCALE, device=x_tilde.device))
        out.image_embeds, out.text_embeds = x_tilde, t
        out.logits_class = LOGIT_SCALE * x_tilde @ t.t()
        out.logits_rep = LOGIT_SCALE * x_rep @ t.t()
        fused = self.alpha * out.logits_class + (1 - self.alpha) * out.logits_rep
        out.logits = fused if classes_seen() else out.logits_class
        if return_zero_shot or labels is not None:
            x = model.encode_frozen_image(pixel_values) if frozen_image_embeds is None else frozen_image_embeds.float()
            out.frozen_image_embeds = x
            out.template_embeds = model.encode_templates(class_names, templates, adapter_name=adapter_name)
            out.logits_zero_shot = model.logit_scale * x @ out.template_embeds.t()
        if output_features:
            out.image_features, out.text_features = img, t_raw
            out.frozen_image_features = model._image_features(pixel_values, None, normalize=False)
        if labels is not None:
            out.loss = mmrl_loss(out, labels, self.alpha, self.reg_weight)
        return out


def mmrl_loss(output: MetaPromptOutput, labels: torch.Tensor, alpha: float, reg_weight: float) -> torch.Tensor:
    """α CE(z, y) + (1 − α) CE(z_rep, y) + λ (1 − mean_b cos(x̃_b, x_b)) + λ (1 − mean_c cos(t_c, h_c)), the
    official `MMRL_Loss`; `output` needs `logits_class`, `logits_rep`, the prompted and the frozen features."""
    if output.frozen_image_embeds is None or output.template_embeds is None:
        raise ValueError("mmrl: the forward returned no frozen features; call it with return_zero_shot=True")
    ce = F.cross_entropy(output.logits_class, labels)
    ce_rep = F.cross_entropy(output.logits_rep, labels)
    x = output.frozen_image_embeds.detach().to(output.image_embeds.dtype)
    h = output.template_embeds.detach().to(output.text_embeds.dtype)
    reg_image = 1 - F.cosine_similarity(output.image_embeds, x, dim=1).mean()
    reg_text = 1 - F.cosine_similarity(output.text_embeds, h, dim=1).mean()
    return alpha * ce + (1 - alpha) * ce_rep + reg_weight * reg_image + reg_weight * reg_text


register_adapter_head("mmrl", MMRLHead)
