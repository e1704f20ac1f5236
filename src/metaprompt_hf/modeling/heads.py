"""Adapter heads: learned tensors of an adapter beyond θ_t and θ_v, and the logits they form (docs/architecture.md
§4.2).

Most methods are prompts only: the model forms their logits (z^o, or s<x̃, t>). A method with its own inference
parameters — CoCoOp's meta-network, which shifts the text context per image — registers an `AdapterHead` class under
its method name, as PEFT maps a tuner type to its layer classes. The adapter whose `method_config["name"]` has a
registered head builds one beside its prompts; the head's tensors are saved in `metaprompt_model.safetensors` under
`head.<parameter name>` and read back as strictly as the prompts (`adapters/files.py`), and `MetaPromptModel.forward`
asks the head for the output's `logits`. Heads of the package's own methods live here; a plugin registers its own
with `register_adapter_head(name, cls)`.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from .configuration_metaprompt import MetaPromptConfig

__all__ = [
    "ADAPTER_HEADS",
    "HEAD_PREFIX",
    "AdapterHead",
    "CoCoOpHead",
    "MaPLeHead",
    "adapter_vision_prompts",
    "build_adapter_head",
    "classes_seen",
    "register_adapter_head",
    "seen_classes",
]

#: Prefix of a head's tensors in the adapter's safetensors file and `prompt_state_dict`.
HEAD_PREFIX = "head."


class AdapterHead(nn.Module):
    """An adapter's own inference parameters and its logits. Subclasses build their parameters (fp32) in
    `__init__`, say their shapes from the config alone in `expected_shapes`, and implement `logits` — or set
    `forms_logits = False` to keep the model's s<x̃, t> — and, optionally, `vision_prompts` (the prompts of the
    image pass, when the head derives them instead of the adapter holding θ_v).

    Args:
        config: the adapter's config, fitted to the base model (widths and depths known).
        backbone: the base model's `DualEncoderBackbone` (its widths, device).
    """

    def __init__(self, config: MetaPromptConfig, backbone: Any) -> None:
        super().__init__()
        self.config = config

    #: Whether `logits` forms the adapter's logits; False keeps the model's s<x̃, t> (z^o when coupled).
    forms_logits: bool = True
    #: Whether the head runs the adapter's whole forward (`output`: its own encoder passes, as MMRL's inserted
    #: tokens need); `MetaPromptModel.forward` then returns what `output` returns.
    forms_output: bool = False

    @classmethod
    def expected_shapes(cls, config: MetaPromptConfig) -> dict[str, tuple[int | None, ...]]:
        """Shape of each tensor (key without `head.`) as far as `config` tells, None for a dimension it does not
        record; checked against the file's header before anything is allocated."""
        return {}

    def logits(
        self, model: Any, image_embeds: torch.Tensor, class_names: Sequence[str], *, adapter_name: str
    ) -> torch.Tensor:
        """The adapter's logits (B, C), before the base model's logit bias (added by `forward`).

        Args:
            model: the `MetaPromptModel` (its encoders, `logit_scale`).
            image_embeds: x̃ (B, P), L2-normalised (the frozen x when the adapter has no vision prompts).
            class_names: the C class names of the call.
            adapter_name: the adapter of the call (its prompts).
        """
        raise NotImplementedError

    def output(
        self, model: Any, pixel_values: torch.Tensor, class_names: Sequence[str], labels: Any, **kwargs: Any
    ) -> Any:
        """The `MetaPromptOutput` of `model.forward` for a head with `forms_output = True`; `kwargs` are forward's
        keyword arguments (`adapter_name` resolved to the call's adapter)."""
        raise NotImplementedError

    def vision_prompts(self, model: Any, adapter: Any) -> torch.Tensor | None:
        """The vision prompts (depth, n, d_vision) of the adapter's image pass, or None to use its θ_v (the
        default). Called once per image pass, so prompts computed from trained tensors carry their gradients.

        Args:
            model: the `MetaPromptModel`.
            adapter: the adapter of the call (`adapters/multi.py`, `PromptAdapter`: its `text_prompts`).
        """
        return None


_SEEN: contextvars.ContextVar[bool] = contextvars.ContextVar("metaprompt_seen_classes", default=False)


@contextlib.contextmanager
def seen_classes(seen: bool = True) -> Iterator[None]:
    """Inside the block (this thread only), the class names of forward calls are the classes the adapter was trained
    on, in its training domain (base-to-new's base classes; the source dataset of a transfer run), so a head may use
    logits it keeps for those classes (MMRL's fused logits, docs/methods/mmrl.md). Outside it every call is treated
    as new classes: the safe default for arbitrary class names. Other adapters ignore it."""
    token = _SEEN.set(bool(seen))
    try:
        yield
    finally:
        _SEEN.reset(token)


def classes_seen() -> bool:
    """Whether the current call is inside `seen_classes()`."""
    return _SEEN.get()


def adapter_vision_prompts(model: Any, adapter: Any) -> torch.Tensor | None:
    """The vision prompts an adapter's image pass uses: its head's when the head gives them, else θ_v (None
    without vision prompts)."""
    if adapter.head is not None:
        prompts = adapter.head.vision_prompts(model, adapter)
        if prompts is not None:
            return prompts
    return adapter.vision_prompts


ADAPTER_HEADS: dict[str, type[AdapterHead]] = {}


def register_adapter_head(name: str, cls: type[AdapterHead], *, overwrite: bool = False) -> type[AdapterHead]:
    """Register `cls` as the head of adapters whose `method_config["name"]` is `name`."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"adapter head name: expected a non-empty method name, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, AdapterHead)):
        raise TypeError(f"register_adapter_head({name!r}, ...): expected a subclass of AdapterHead")
    if name in ADAPTER_HEADS and ADAPTER_HEADS[name] is not cls and not overwrite:
        raise ValueError(f"adapter head {name!r} is already registered ({ADAPTER_HEADS[name].__name__})")
    ADAPTER_HEADS[name] = cls
    return cls


def head_class(config: MetaPromptConfig) -> type[AdapterHead] | None:
    """The head class registered for the config's method, or None (a prompts-only adapter)."""
    name = (config.method_config or {}).get("name")
    return ADAPTER_HEADS.get(name) if isinstance(name, str) else None


def build_adapter_head(config: MetaPromptConfig, backbone: Any) -> AdapterHead | None:
    """The head of an adapter (fp32, on the base model's device), or None when its method has none."""
    cls = head_class(config)
    return None if cls is None else cls(config, backbone).to(device=backbone.device, dtype=torch.float32)


class CoCoOpHead(AdapterHead):
    """CoCoOp's meta-network π = Linear(P, P//16) → ReLU → Linear(P//16, d_text) on the normalised image feature x;
    the context of image b is θ_t + π(x_b) on every token, and its logits are s<x_b, t_c(θ_t + π(x_b))> over the C
    classes (https://github.com/KaiyangZhou/CoOp/blob/ff61507c790454bce7c5052c3ac39e60772f1f89/trainers/cocoop.py;
    docs/methods/cocoop.md). P is the base model's projection width (its feature width without one)."""

    def __init__(self, config: MetaPromptConfig, backbone: Any) -> None:
        super().__init__(config, backbone)
        if not config.n_ctx or config.text_depth != 1 or config.n_pro or config.coupled_branches:
            raise ValueError(
                f"cocoop: the adapter is a layer-0 text context scored by s<x, t(x)> (n_ctx >= 1, text_depth 1, "
                f"n_pro 0, coupled_branches false); got n_ctx {config.n_ctx}, text_depth {config.text_depth}, n_pro "
                f"{config.n_pro}, coupled_branches {config.coupled_branches}"
            )
        vis_dim = feature_width(backbone)
        self.meta_net = nn.Sequential(
            OrderedDict(
                [
                    ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("linear2", nn.Linear(vis_dim // 16, backbone.text_hidden_size)),
                ]
            )
        )

    @classmethod
    def expected_shapes(cls, config: MetaPromptConfig) -> dict[str, tuple[int | None, ...]]:
        return {
            "meta_net.linear1.weight": (None, None),
            "meta_net.linear1.bias": (None,),
            "meta_net.linear2.weight": (config.text_hidden_size, None),
            "meta_net.linear2.bias": (config.text_hidden_size,),
        }

    def logits(
        self, model: Any, image_embeds: torch.Tensor, class_names: Sequence[str], *, adapter_name: str
    ) -> torch.Tensor:
        ctx = model._adapter(adapter_name).text_prompts  # (1, n_ctx, d_text)
        bias = self.meta_net(image_embeds.float())  # (B, d_text)
        contexts = ctx[None] + bias[:, None, None, :]  # (B, 1, n_ctx, d_text): θ_t + π(x_b) on every token
        # The B × C text encodings share calls of at most `class_chunk_size` rows (memory bounded as in
        # `MetaPromptModel.encode_text_per_context`); the official code loops over the images one at a time.
        t = model.encode_text_per_context(class_names, contexts, adapter_name=adapter_name)  # (B, C, P)
        return model.logit_scale * (t @ image_embeds.float()[:, :, None]).squeeze(-1)


class MaPLeHead(AdapterHead):
    """MaPLe's coupling functions: the vision prompts of layer i are F_i(θ_t[i]), F_i = Linear(d_text, d_vision),
    one separate function per prompted layer (`proj` for layer 0, `compound_prompt_projections.{i-1}` for the
    compound layers i = 1 … depth-1), recomputed from θ_t at every call; the logits stay s<x̃, t>
    (https://github.com/muzairkhattak/multimodal-prompt-learning/blob/0d62419f24cb8e65b43adfb0611f1a53620e7214/trainers/maple.py;
    docs/methods/maple.md)."""

    forms_logits = False

    def __init__(self, config: MetaPromptConfig, backbone: Any) -> None:
        super().__init__(config, backbone)
        if not config.n_ctx or config.n_pro or config.coupled_branches:
            raise ValueError(
                f"maple: the adapter is deep text prompts whose projections are the vision prompts, scored by "
                f"s<x~, t> (n_ctx >= 1, n_pro 0, coupled_branches false); got n_ctx {config.n_ctx}, n_pro "
                f"{config.n_pro}, coupled_branches {config.coupled_branches}"
            )
        if config.text_depth > backbone.vision_num_layers:
            raise ValueError(
                f"maple: text_depth {config.text_depth} prompts more layers than the vision encoder has "
                f"({backbone.vision_num_layers}); every text prompt layer has a projected vision prompt layer"
            )
        d_text, d_vision = backbone.text_hidden_size, backbone.vision_hidden_size
        self.proj = nn.Linear(d_text, d_vision)
        # The official code deep-copies ONE initialised Linear for every compound layer (`_get_clones`): they start
        # equal and are trained apart.
        single = nn.Linear(d_text, d_vision)
        self.compound_prompt_projections = nn.ModuleList([copy.deepcopy(single) for _ in range(config.text_depth - 1)])

    @classmethod
    def expected_shapes(cls, config: MetaPromptConfig) -> dict[str, tuple[int | None, ...]]:
        d_text, d_vision = config.text_hidden_size, config.vision_hidden_size
        out: dict[str, tuple[int | None, ...]] = {"proj.weight": (d_vision, d_text), "proj.bias": (d_vision,)}
        for i in range((config.text_depth or 1) - 1):
            out[f"compound_prompt_projections.{i}.weight"] = (d_vision, d_text)
            out[f"compound_prompt_projections.{i}.bias"] = (d_vision,)
        return out

    def vision_prompts(self, model: Any, adapter: Any) -> torch.Tensor:
        ctx = adapter.text_prompts  # (depth, n_ctx, d_text)
        layers = [self.proj, *self.compound_prompt_projections]
        return torch.stack([f(ctx[i].float()) for i, f in enumerate(layers)])  # (depth, n_ctx, d_vision)


def feature_width(backbone: Any) -> int:
    """The width of the base model's image features: its projection width, or the vision width without one."""
    width = getattr(backbone.model.config, "projection_dim", None)
    return int(width) if width else int(backbone.vision_hidden_size)


register_adapter_head("cocoop", CoCoOpHead)
register_adapter_head("maple", MaPLeHead)
