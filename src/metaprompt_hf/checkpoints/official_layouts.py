"""Where each official trainer keeps its learned prompts in the state dict it saves: one table entry per method.

An entry (`CheckpointLayout`) names, for the text and the vision branch, the key(s) holding the prompts — one stacked
`(depth, tokens, width)` tensor (MetaPrompt), or a layer-0 key plus a per-layer key for the deeper layers (CoOp,
IVLP, PromptSRC: `(tokens, width)` each) — and the keys dropped for a stated reason (token buffers recomputed from
the class names, frozen copies of the image encoder, tensors the official forward never reads). Every other key is
the frozen base model and is dropped. A key that looks learned (`ctx`, `VPT*`, `compound_prompts*`, anything under
`prompt_learner.`) but is neither taken nor listed is refused: the checkpoint is probably another method's.

To add a method: one `CheckpointLayout` in `OFFICIAL_LAYOUTS`, with the trainer's source URL at a pinned commit and
what was verified.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import torch

from .safe_unpickle import CheckpointError, TensorRef

__all__ = ["OFFICIAL_LAYOUTS", "CheckpointLayout", "Extraction", "PromptKeys", "extract_prompts", "find_state_dict"]

_TOKEN_BUFFERS = (r"(^|\.)token_(prefix|suffix|midfix)$", "fixed token buffers (recomputed from the class names)")
_LOOKS_LEARNED = re.compile(
    r"(^|\.)(ctx\w*|VPT\w*|compound_prompts\w*|proj_rep)(\.|$)|(^|\.)(prompt_learner|representation_learner)\."
)
FROZEN_BASE = "the frozen base model"


@dataclasses.dataclass(frozen=True)
class PromptKeys:
    """Keys of one branch's prompts: `stacked` (one `(depth, tokens, width)` tensor), or `first` (layer 0,
    `(tokens, width)`) with `deeper` (layers i >= 1, `(tokens, width)`, `{i}` in the key) while they exist."""

    stacked: str | None = None
    first: str | None = None
    deeper: str | None = None
    deeper_from: int = 1  # the `{i}` of layer 1 (MaPLe numbers its compound prompts from 0)

    def __post_init__(self) -> None:
        if (self.stacked is None) == (self.first is None) or (self.deeper and "{i}" not in self.deeper):
            raise ValueError(f"PromptKeys: give `stacked` or `first` (+ `deeper` with '{{i}}'), got {self}")


@dataclasses.dataclass(frozen=True)
class CheckpointLayout:
    """How one official trainer stores its learned prompts (see the module docstring)."""

    source: str  # the official trainer at a pinned commit
    saved_model: str  # what Dassl's `register_model` saves: the folder name under the output dir and its content
    text: PromptKeys | None
    vision: PromptKeys | None
    dropped: tuple[tuple[str, str], ...] = ()  # (regex on the key, reason) besides the token buffers
    verified: str = ""
    # Keys whose values the official forward casts to fp16 whatever the run's precision: rounded the same way, so
    # the adapter computes with the values the official model computed with.
    fp16_in_forward: str | None = None
    # The method's own inference tensors: (official key, adapter key `head.<name>`, modeling/heads.py); shapes are
    # checked when the adapter loads them.
    head: tuple[tuple[str, str], ...] = ()


_METAPROMPT_URL = "https://github.com/Vill-Lab/2024-TIP-MetaPrompt/blob/ca996074f789f67c8f8dde1c38a8da9a6c614e90"
_COOP_URL = "https://github.com/KaiyangZhou/CoOp/blob/ff61507c790454bce7c5052c3ac39e60772f1f89"
_KGCOOP_URL = "https://github.com/htyao89/KgCoOp/blob/c43ccc32c8739f64b165cfa205fcc6c0f5bb5b17/KgCoOp"
_MAPLE_URL = (
    "https://github.com/muzairkhattak/multimodal-prompt-learning/blob/69bce21ae8eda80ad6187534b2dce09cf6c59e17"
)
_MAPLE_CODE_URL = (
    "https://github.com/muzairkhattak/multimodal-prompt-learning/blob/0d62419f24cb8e65b43adfb0611f1a53620e7214"
)
_PROMPTSRC_URL = "https://github.com/muzairkhattak/PromptSRC/blob/bb95c77b634d63488f2cad81ff4a72d53bdd06d5"
_MMRL_URL = "https://github.com/yunncheng/MMRL/blob/27d8821f6ac135a1d0c8e4c5ed78af14df0cd82e"
_CODE_READ = "key names and shapes read from the official code at the commit of `source`"

METAPROMPT = CheckpointLayout(
    source=f"{_METAPROMPT_URL}/trainers/meta.py#L72-L179",
    saved_model="model/: the whole CustomCLIP (prompts and the frozen CLIP; trainers/meta.py#L316)",
    text=PromptKeys(stacked="prompt_learner.ctx"),  # (LAYERS, N_CTX, d_text), trainers/meta.py#L151-L154
    vision=PromptKeys(stacked="vision_prompt_learner.ctx"),  # (LAYERS, N_PRO, d_vision), trainers/meta.py#L85-L88
    dropped=((r"^vision_prompt_learner\.(visual|conv1|class_embedding|positional_embedding)(\.|$)", FROZEN_BASE),),
    verified=f"{_CODE_READ}; end to end against the official model's recorded prompts and eval logits "
    "(tests/fixtures/fidelity) and against a whole state dict and eval logits recorded from the official code on a "
    "tiny CLIP (tests/fixtures/official_checkpoints)",
)
COOP = CheckpointLayout(
    source=f"{_COOP_URL}/trainers/coop.py#L96-L110",
    saved_model="prompt_learner/: the prompt learner only (trainers/coop.py#L248)",
    text=PromptKeys(first="ctx"),  # (N_CTX, d_text); (n_cls, N_CTX, d_text) with CSC, which the adapter lacks
    vision=None,
    # The class token position ("end", the default and the adapter's; "middle" / "front") is in the run's config,
    # not in the checkpoint, so a run with another position cannot be told apart here.
    verified=_CODE_READ + "; assumes CLASS_TOKEN_POSITION 'end' (not recorded in the checkpoint)",
)
KGCOOP = CheckpointLayout(
    source=f"{_KGCOOP_URL}/trainers/kgcoop.py#L82-L172",
    saved_model="prompt_learner/: the prompt learner only (trainers/kgcoop.py#L282)",
    text=PromptKeys(first="ctx"),
    vision=None,
    dropped=(
        # Created in the prompt learner but never read by its forward, and frozen: only names containing "ctx"
        # train (trainers/kgcoop.py#L268-L274).
        (r"^(bias_vectors|meta_net\..*)$", "initialised but unused by the official forward and never trained"),
    ),
    verified=f"{_CODE_READ}; the key names and the context's eval logits (CoOp's) against a state dict and logits "
    "recorded from the official code on a tiny CLIP (tests/fixtures/official_checkpoints)",
)
COCOOP = CheckpointLayout(
    source=f"{_COOP_URL}/trainers/cocoop.py#L62-L161",
    saved_model="prompt_learner/: the prompt learner only (trainers/cocoop.py#L237)",
    text=PromptKeys(first="ctx"),  # (N_CTX, d_text), trainers/cocoop.py#L93
    vision=None,
    # The meta-network Linear(P, P // 16) -> ReLU -> Linear(P // 16, d_text), trainers/cocoop.py#L95-L99
    head=tuple(
        (f"meta_net.linear{i}.{w}", f"head.meta_net.linear{i}.{w}") for i in (1, 2) for w in ("weight", "bias")
    ),
    verified=f"{_CODE_READ}; the context and meta-network of the CoCoOp fidelity recording, saved under the official "
    "keys, convert to the official eval logits (tests/fixtures/fidelity_cocoop)",
)
IVLP = CheckpointLayout(
    source=f"{_MAPLE_URL}/trainers/independentVL.py#L65-L114",
    saved_model="VLPromptLearner/: the whole CustomCLIP (trainers/independentVL.py#L226)",
    # layer 0 in the prompt learner; deeper layers in the modified CLIP's blocks (clip/model.py#L191-L221, #L373-L378)
    text=PromptKeys(first="prompt_learner.ctx", deeper="text_encoder.transformer.resblocks.{i}.VPT_shallow"),
    vision=PromptKeys(first="image_encoder.VPT", deeper="image_encoder.transformer.resblocks.{i}.VPT_shallow"),
    verified=f"{_CODE_READ}; end to end against a state dict and eval logits recorded from the official code on a "
    "tiny CLIP (tests/fixtures/official_checkpoints)",
    fp16_in_forward=r"(^|\.)VPT(_shallow)?$",  # `.half()` in clip/model.py#L238, #L249, #L405
)
MAPLE = CheckpointLayout(
    source=f"{_MAPLE_CODE_URL}/trainers/maple.py#L69-L176",
    saved_model="MultiModalPromptLearner/: the whole CustomCLIP (trainers/maple.py#L255)",
    # layer 0's context, then the compound text prompts of layers 1.. numbered from 0 (trainers/maple.py#L111-L117)
    text=PromptKeys(first="prompt_learner.ctx", deeper="prompt_learner.compound_prompts_text.{i}", deeper_from=0),
    vision=None,  # projected from the text prompts by the coupling functions: the head's (modeling/heads.py)
    head=(
        ("prompt_learner.proj.weight", "head.proj.weight"),  # Linear(d_text, d_vision), kept in fp16 (#L103-L104)
        ("prompt_learner.proj.bias", "head.proj.bias"),
        ("prompt_learner.compound_prompt_projections.{i}.weight", "head.compound_prompt_projections.{i}.weight"),
        ("prompt_learner.compound_prompt_projections.{i}.bias", "head.compound_prompt_projections.{i}.bias"),
    ),
    verified=f"{_CODE_READ}; the text prompts and coupling functions of the MaPLe fidelity recording, saved under the "
    "official keys, convert to the official eval logits (tests/fixtures/fidelity_maple)",
    fp16_in_forward=r"(^|\.)compound_prompts_text\.\d+$",  # `.half()` in clip/model.py#L323
)
PROMPTSRC = CheckpointLayout(
    source=f"{_PROMPTSRC_URL}/trainers/promptsrc.py#L72-L138",
    saved_model="VLPromptLearner/: the whole CustomCLIP after Gaussian prompt aggregation (trainers/promptsrc.py#L261)",
    # The IVLP design of the same authors' modified CLIP (clip/model.py#L191-L221, #L373-L379).
    text=PromptKeys(first="prompt_learner.ctx", deeper="text_encoder.transformer.resblocks.{i}.VPT_shallow"),
    vision=PromptKeys(first="image_encoder.VPT", deeper="image_encoder.transformer.resblocks.{i}.VPT_shallow"),
    dropped=((r"^prompt_learner\.ZS_image_encoder\.", "the frozen zero-shot image encoder (the teacher)"),),
    verified=f"{_CODE_READ}; the key names and the prompts' eval logits against a state dict and logits recorded from "
    "the official code on a tiny CLIP (tests/fixtures/official_checkpoints)",
    fp16_in_forward=r"(^|\.)VPT(_shallow)?$",  # `.half()` in clip/model.py#L238, #L249, #L407
)
MMRL = CheckpointLayout(
    source=f"{_MMRL_URL}/trainers/mmrl.py#L141-L192",
    saved_model="MultiModalRepresentationLearner/: the whole CustomCLIP (trainers/mmrl.py#L324)",
    text=None,  # no prompts: the representation learner and proj_rep are the head's (modeling/mmrl_head.py)
    vision=None,
    head=(
        ("representation_learner.compound_rep_tokens", "head.compound_rep_tokens"),  # (N_REP_TOKENS, REP_DIM)
        *(
            (
                f"representation_learner.compound_rep_tokens_{t}proj.{{i}}.{w}",
                f"head.compound_rep_tokens_{t}proj.{{i}}.{w}",
            )
            for t in ("r2v", "r2t")
            for w in ("weight", "bias")
        ),
        ("image_encoder.proj_rep", "head.proj_rep"),  # (d_vision, P), clip/model_mmrl.py#L338
    ),
    # the class texts' token embeddings, a buffer of CustomCLIP; the official `load_model` drops them as well
    dropped=((r"^prompt_embeddings$", "the class texts' token embeddings (recomputed from the class names)"),),
    verified=f"{_CODE_READ}; the learned tensors of the MMRL fidelity recording, saved under the official keys with "
    "the buffer and frozen keys the official state dict has, convert to the official eval logits on base and new "
    "classes (tests/fixtures/fidelity_mmrl). REP_LAYERS is not in the checkpoint: pass it with --method_args",
)

OFFICIAL_LAYOUTS: dict[str, CheckpointLayout] = {
    "metaprompt": METAPROMPT,
    "metaprompt_no_meta": METAPROMPT,
    "metaprompt_second_order": METAPROMPT,
    "metaprompt_mldg": METAPROMPT,
    "metaprompt_mldg_second_order": METAPROMPT,
    "metaprompt_faithful": METAPROMPT,
    "coop": COOP,
    "cocoop": COCOOP,
    "kgcoop": KGCOOP,
    "ivlp": IVLP,
    "promptsrc": PROMPTSRC,
    "maple": MAPLE,
    "mmrl": MMRL,
}


@dataclasses.dataclass
class Extraction:
    """The prompts found in a state dict: adapter key → `(depth, tokens, width)` float32 tensor, the official keys
    each was built from, every dropped key by reason, and the keys rounded to fp16 as the official forward does."""

    tensors: dict[str, torch.Tensor]
    taken: dict[str, list[str]]
    dropped: dict[str, list[str]]
    rounded: list[str] = dataclasses.field(default_factory=list)


def find_state_dict(checkpoint: Any, source: str) -> dict[str, TensorRef]:
    """The model's state dict of a Dassl checkpoint (`checkpoint["state_dict"]`) or a bare state dict; a
    DataParallel `module.` prefix on every key is removed."""
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) and "state_dict" in checkpoint else checkpoint
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{source}: no state_dict (expected Dassl's {{'state_dict': ..., 'epoch': ...}})")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, TensorRef)]
    if bad:
        raise CheckpointError(f"{source}: state_dict entries that are not named tensors: {bad[:5]}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _shape_error(source: str, key: str, got: tuple[int, ...], want: str, method: str, base: str) -> CheckpointError:
    return CheckpointError(
        f"{source}: tensor {key!r} has shape {got}, but {method} on base model {base} expects {want}"
    )


def _read(ref: TensorRef, key: str, fp16: re.Pattern | None) -> torch.Tensor:
    value = ref.materialize()
    return (value.half() if fp16 is not None and fp16.search(key) else value).float()


def _branch(
    state: Mapping[str, TensorRef],
    keys: PromptKeys,
    width: int,
    layers: int,
    what: str,
    context: tuple[str, str, str],
    fp16: re.Pattern | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """One branch's prompts as `(depth, tokens, width)` and the keys read; shapes checked before any read."""
    source, method, base = context
    first = keys.stacked or keys.first
    if first not in state:
        near = sorted(k for k in state if _LOOKS_LEARNED.search(k))[:8]
        raise CheckpointError(
            f"{source}: no {what} prompts: {method} checkpoints hold them under {first!r}, which is missing "
            f"(learned-looking keys here: {near or 'none'}); is the checkpoint another method's?"
        )
    if keys.stacked:
        ref = state[first]
        got = tuple(ref.shape)
        if len(got) != 3 or got[2] != width or not 1 <= got[0] <= layers or got[1] < 1:
            raise _shape_error(source, first, got, f"(depth <= {layers}, tokens, {width})", method, base)
        return _read(ref, first, fp16), [first]
    names = [first]
    if keys.deeper:
        found = _consecutive(state, keys.deeper, keys.deeper_from)
        names += found
        pattern = re.compile("^" + re.escape(keys.deeper).replace(r"\{i\}", r"(\d+)") + "$")
        stray = sorted(k for k in state if pattern.match(k) and k not in names)
        if stray:
            raise CheckpointError(
                f"{source}: {what} prompts of layers 1..{len(found)} are consecutive but {stray} lie beyond a gap"
            )
    n_tokens = tuple(state[first].shape)[0] if len(state[first].shape) == 2 else None
    for name in names:
        got = tuple(state[name].shape)
        if len(got) != 2 or got[1] != width or got[0] != n_tokens or n_tokens < 1:
            want = f"({n_tokens if n_tokens else 'tokens'}, {width}) (one row per prompt token)"
            raise _shape_error(source, name, got, want, method, base)
    if len(names) > layers:
        raise CheckpointError(f"{source}: {what} prompts for {len(names)} layers, but base model {base} has {layers}")
    return torch.stack([_read(state[n], n, fp16) for n in names]), names


def _consecutive(state: Mapping[str, TensorRef], template: str, start: int) -> list[str]:
    """The keys `template.format(i=start)`, `start + 1`, ... while they are in `state`."""
    names, i = [], start
    while template.format(i=i) in state:
        names.append(template.format(i=i))
        i += 1
    return names


def extract_prompts(
    state: Mapping[str, TensorRef],
    layout: CheckpointLayout,
    dims: Mapping[str, int],
    *,
    method: str,
    base: str,
    source: str,
) -> Extraction:
    """Take the learned prompts of `layout` from an official state dict and account for every other key.

    Args:
        state: key → `TensorRef` (`find_state_dict`).
        dims: the base model's `text_hidden_size`, `vision_hidden_size`, `text_num_layers`, `vision_num_layers`.
        method, base, source: names for the messages (the method, the base model, the checkpoint file).

    Returns the prompts as `text_prompts` `(depth_t, n_ctx, d_text)` and `vision_prompts` `(depth_v, n_pro,
    d_vision)`. Raises `CheckpointError` naming the key and both shapes for a tensor that does not fit, and for a
    learned-looking key that this method's layout does not take.
    """
    context = (source, method, base)
    fp16 = re.compile(layout.fp16_in_forward) if layout.fp16_in_forward else None
    tensors: dict[str, torch.Tensor] = {}
    taken: dict[str, list[str]] = {}
    for name, keys, width, layers in (
        ("text", layout.text, dims["text_hidden_size"], dims["text_num_layers"]),
        ("vision", layout.vision, dims["vision_hidden_size"], dims["vision_num_layers"]),
    ):
        if keys is not None:
            tensors[f"{name}_prompts"], taken[f"{name}_prompts"] = _branch(
                state, keys, width, layers, name, context, fp16
            )
    head = []
    for official, mine in layout.head:  # an entry with `{i}`: one per layer, from 0 while present
        found = _consecutive(state, official, 0) if "{i}" in official else [official]
        head += [(o, mine.format(i=i) if "{i}" in mine else mine) for i, o in enumerate(found)]
    for official, mine in head:
        if official not in state:
            raise CheckpointError(
                f"{source}: no {official!r}: {method} checkpoints hold their {mine.split('.', 1)[1]} there; is the "
                "checkpoint another method's?"
            )
        tensors[mine], taken[mine] = _read(state[official], official, fp16), [official]
    used = {k for names in taken.values() for k in names}
    rounded = sorted(k for k in used if fp16 is not None and fp16.search(k))
    rules = [(re.compile(p), reason) for p, reason in (_TOKEN_BUFFERS, *layout.dropped)]
    dropped: dict[str, list[str]] = {}
    unexplained = []
    for key in state:
        if key in used:
            continue
        reason = next((r for p, r in rules if p.search(key)), None)
        if reason is None:
            if _LOOKS_LEARNED.search(key):
                unexplained.append(f"{key} {tuple(state[key].shape)}")
                continue
            reason = FROZEN_BASE
        dropped.setdefault(reason, []).append(key)
    if unexplained:
        raise CheckpointError(
            f"{source}: learned-looking tensors that {method} does not use: {unexplained[:8]}; "
            f"the checkpoint is probably another method's (official layout: {layout.source})"
        )
    return Extraction(tensors, taken, dropped, rounded)
