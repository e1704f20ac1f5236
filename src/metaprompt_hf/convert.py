"""Official checkpoints as adapters: `python -m metaprompt_hf.convert`.

    python -m metaprompt_hf.convert --method metaprompt --checkpoint output/.../model/model.pth.tar-5 \\
        --base_model openai/clip-vit-base-patch16 --dataset_name imagenet --output_dir metaprompt-imagenet

reads a checkpoint as the official trainer wrote it (Dassl's `model.pth.tar-N`) without running its pickle
(`checkpoints/safe_unpickle.py`), takes the method's learned prompts by the key names of its official code
(`checkpoints/official_layouts.py`), checks them against the method and the base model (a clear error naming the key
and both shapes), reports every dropped key (fixed token buffers, the frozen CLIP) and writes an adapter folder that
`MetaPromptModel.from_pretrained(OUT)` loads and `push_to_hub` publishes. The frozen branch's templates are not in
the checkpoint: they come from `--template` or the preset of `--dataset_name` (docs/method.md §8), as in training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .backbones import get_backbone, load_base_model, load_base_processor, resolve_base_model
from .checkpoints import OFFICIAL_LAYOUTS, CheckpointError, extract_prompts, find_state_dict, read_torch_checkpoint
from .inputs.templates import templates_for_dataset
from .methods import METHODS, get_method, parse_method_args
from .modeling.modeling_metaprompt import MetaPromptModel

logger = logging.getLogger(__name__)


@dataclass
class ConvertArguments:
    """Arguments of `python -m metaprompt_hf.convert`."""

    method: str = field(metadata={"help": f"The method that trained the checkpoint: {', '.join(OFFICIAL_LAYOUTS)}."})
    checkpoint: str = field(metadata={"help": "The official checkpoint file (Dassl's model.pth.tar-N)."})
    base_model: str = field(metadata={"help": "Hub id or folder of the CLIP the checkpoint was trained on."})
    output_dir: str = field(metadata={"help": "The adapter folder to write (must be empty or absent)."})
    base_model_revision: str | None = field(default=None, metadata={"help": "Revision of the base model."})
    template: str | None = field(
        default=None, metadata={"help": "Template(s) of the frozen text branch, '|'-separated, each with '{}'."}
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Dataset the checkpoint was trained on: its template preset, if no --template."},
    )
    method_args: str | None = field(default=None, metadata={"help": "The method's knobs, 'k=v,...' (recorded)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Hugging Face cache (default: HF_HUB_CACHE)."})
    overwrite: bool = field(default=False, metadata={"help": "Write into a non-empty output_dir."})

    def __post_init__(self) -> None:
        if self.method not in OFFICIAL_LAYOUTS:
            raise CheckpointError(
                f"method: no official checkpoint layout for {self.method!r}; one of {list(OFFICIAL_LAYOUTS)}"
            )
        if not os.path.isfile(self.checkpoint):
            raise CheckpointError(f"checkpoint: no such file {self.checkpoint}")
        if os.path.exists(self.output_dir):
            if not os.path.isdir(self.output_dir):
                raise CheckpointError(f"output_dir: {self.output_dir} exists and is not a folder")
            if os.listdir(self.output_dir) and not self.overwrite:
                raise CheckpointError(f"output_dir: {self.output_dir} is not empty; pass --overwrite to write into it")
        self.templates = (
            [t.strip() for t in self.template.split("|") if t.strip()]
            if self.template
            else templates_for_dataset(self.dataset_name)
        )


@dataclass
class ConversionReport:
    """What a conversion took and dropped, for the log and the model card."""

    method: str
    checkpoint: str
    sha256: str
    epoch: Any
    shapes: dict[str, tuple[int, ...]]
    taken: dict[str, list[str]]
    dropped: dict[str, list[str]]
    rounded: list[str]
    stubbed: list[str]
    source: str
    verified: str

    def lines(self) -> list[str]:
        out = [f"converted {self.checkpoint} (sha256 {self.sha256[:16]}…, epoch {self.epoch}) as {self.method}"]
        for key, names in self.taken.items():
            shown = names[0] if len(names) == 1 else f"{names[0]} … {names[-1]} ({len(names)} keys)"
            out.append(f"  took {key} {self.shapes[key]} from {shown}")
        for reason, keys in self.dropped.items():
            out.append(f"  dropped {len(keys)} keys, {reason}: {', '.join(keys[:4])}{' …' if len(keys) > 4 else ''}")
        if self.rounded:
            out.append(
                f"  rounded to fp16 as the official forward does: {len(self.rounded)} keys ({self.rounded[0]} …)"
            )
        if self.stubbed:
            out.append(f"  not built (inert stubs, never called): {', '.join(sorted(self.stubbed))}")
        return out


def _plain_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None  # never render a stub


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_checkpoint(
    args: ConvertArguments, *, clip: Any | None = None, processor: Any | None = None
) -> ConversionReport:
    """Convert `args.checkpoint` into the adapter folder `args.output_dir` (see the module docstring).

    `clip` / `processor` replace loading `args.base_model` (tests reuse a loaded model); the adapter still records
    `args.base_model` as its base. Raises `CheckpointError` before anything is written for a checkpoint that does not
    fit the method or the base model.
    """
    layout = OFFICIAL_LAYOUTS[args.method]
    if args.method not in METHODS:
        raise CheckpointError(
            f"method: {args.method!r} has an official checkpoint layout but is not registered in this installation "
            f"(registered: {list(METHODS)})"
        )
    method = get_method(args.method, parse_method_args(args.method_args))
    checkpoint, reader = read_torch_checkpoint(args.checkpoint)
    try:
        state = find_state_dict(checkpoint, args.checkpoint)
        base_id = resolve_base_model(args.base_model)
        if clip is None:
            hub = dict(revision=args.base_model_revision, cache_dir=args.cache_dir)
            clip = load_base_model(base_id, **hub)
            processor = processor or load_base_processor(base_id, **hub)
        backbone = get_backbone(clip)
        if backbone.model_type != "clip":  # every official trainer here prompts OpenAI's CLIP (placeholder rows 1..n)
            raise CheckpointError(
                f"base_model: {args.base_model} is a {backbone.model_type} model; official {args.method} checkpoints "
                f"are trained on OpenAI CLIP"
            )
        dims = {
            "text_hidden_size": backbone.text_hidden_size,
            "vision_hidden_size": backbone.vision_hidden_size,
            "text_num_layers": backbone.text_num_layers,
            "vision_num_layers": backbone.vision_num_layers,
        }
        found = extract_prompts(state, layout, dims, method=args.method, base=args.base_model, source=args.checkpoint)
    finally:
        reader.close()
    text, vision = found.tensors.get("text_prompts"), found.tensors.get("vision_prompts")
    if (text is not None) != method.text_prompts or (vision is not None) != method.vision_prompts:
        raise CheckpointError(f"method: the {args.method} layout and the registered method disagree on the prompts")
    if method.text_depth is not None and text is not None and text.shape[0] != method.text_depth:
        raise CheckpointError(
            f"{args.checkpoint}: text prompts for {text.shape[0]} layers, but {args.method} has {method.text_depth}"
        )
    config = method.adapter_config(
        args.templates,
        n_ctx=text.shape[1] if text is not None else 0,
        n_pro=vision.shape[1] if vision is not None else 0,
    )
    config = dataclasses.replace(
        config,
        text_depth=text.shape[0] if text is not None else config.text_depth,
        vision_depth=vision.shape[0] if vision is not None else config.vision_depth,
        base_model_name_or_path=args.base_model,
        revision=args.base_model_revision,
    )
    model = MetaPromptModel(clip, config, processor)
    model.load_prompt_state_dict(found.tensors, source=args.checkpoint)
    report = ConversionReport(
        method=args.method,
        checkpoint=args.checkpoint,
        sha256=_sha256(args.checkpoint),
        epoch=_plain_int(checkpoint.get("epoch") if isinstance(checkpoint, dict) else None),
        shapes={k: tuple(v.shape) for k, v in found.tensors.items()},
        taken=found.taken,
        dropped=found.dropped,
        rounded=found.rounded,
        stubbed=sorted(reader.stubbed),
        source=layout.source,
        verified=layout.verified,
    )
    training = {
        "method": args.method,
        "converted from": f"official checkpoint {os.path.basename(args.checkpoint)} (sha256 {report.sha256})",
        "official code": layout.source,
        "epoch": report.epoch,
    }
    model.save_pretrained(
        args.output_dir,
        overwrite=args.overwrite,
        model_card_kwargs={"model_name": f"{args.method} adapter (converted)", "training": training},
    )
    return report


def parse_args(argv: Sequence[str] | None = None) -> ConvertArguments:
    """`ConvertArguments` from the command line (`--<field>`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m metaprompt_hf.convert", description=__doc__.splitlines()[0])
    for f in dataclasses.fields(ConvertArguments):
        if f.type in ("bool", bool):
            parser.add_argument(f"--{f.name}", action="store_true", help=f.metadata["help"])
            continue
        required = f.default is dataclasses.MISSING
        parser.add_argument(
            f"--{f.name}", default=None if required else f.default, required=required, help=f.metadata["help"]
        )
    return ConvertArguments(**vars(parser.parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(argv)
        report = convert_checkpoint(args)
    except (CheckpointError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    print(f"wrote {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
