"""What `benchmarks/perf.py` times: the CLIP (random weights at ViT-B/16 or tiny dimensions), synthetic class names
and batches, and `TrainStep`, one optimizer step of the training loop for one method."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

import torch

from metaprompt_hf import MetaPromptModel
from metaprompt_hf import training as T
from metaprompt_hf.testing import VIT_B16, byte_level_tokenizer, image_processor, tiny_clip_config
from metaprompt_hf.training.step import TrainingStep

TEMPLATES = ["a photo of a {}"]
TRAIN_METHODS = ("metaprompt", "ivlp", "coop")
LEARNING_RATE = 0.0015  # the post-warm-up rate, so that the meta step really updates the prompts


# ---------------------------------------------------------------------------------------------------- model
def clip_config(model: str, tokenizer: Any) -> Any:
    """ViT-B/16 dimensions (or the test-sized tiny CLIP with `--quick`), vocabulary fitted to `tokenizer`."""
    dims = dict(VIT_B16) if model == "vit-b16" else {}
    vocab = dict(
        text_vocab_size=len(tokenizer),
        text_bos_token_id=tokenizer.bos_token_id,
        text_eos_token_id=tokenizer.eos_token_id,
        text_pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    return tiny_clip_config(**dims, **vocab)


def build_clip(model: str, tokenizer: Any, attn: str, device: str) -> Any:
    from transformers import CLIPModel

    torch.manual_seed(0)
    clip = CLIPModel._from_config(clip_config(model, tokenizer), attn_implementation=attn).eval()
    return clip.to(device)


def load_tokenizer(path: str | None) -> Any:
    if path is None:
        return byte_level_tokenizer()
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(path)


def make_processor(clip: Any, tokenizer: Any) -> Any:
    from transformers import CLIPProcessor

    return CLIPProcessor(image_processor=image_processor(clip.config.vision_config.image_size), tokenizer=tokenizer)


def synthetic_class_names(n: int, tokenizer: Any, lo: int = 3, hi: int = 5) -> list[str]:
    """`n` distinct class names of `lo`..`hi` tokens each (cycling through the lengths) under `tokenizer`.

    With CLIP's BPE these are "class name 7" ... "class name 123" (3-5 tokens, digits are single tokens). The
    byte-level test tokenizer has no merges (one token per character), so there a name is a compact code such as
    "c0 7a" with the same token count: the text encoder sees realistic sequence lengths either way."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    names: list[str] = []
    for i in range(n):
        want = lo + i % (hi - lo + 1)
        code, j = "", i
        while len(code) < want:
            code, j = code + alphabet[j % len(alphabet)], j // len(alphabet)
        # Letters first so that no name is all digits; a space splits the code into two "words".
        code = "abcdefghijklmnopqrstuvwxyz"[i % 26] + code[1:]
        compact = code[:2] + " " + code[2:] if want > 2 else code
        for candidate in (f"class name {i}", compact):
            if candidate not in names and lo <= count(candidate) <= hi:
                names.append(candidate)
                break
        else:
            raise ValueError(f"could not make a {lo}-{hi} token class name #{i} with this tokenizer")
    return names


def new_model(clip: Any, processor: Any, args: T.MetaPromptTrainingArguments) -> MetaPromptModel:
    """A fresh adapter of `args.method` on the CLIP built in code: `training.build_model` with that base."""
    return T.build_model(args, TEMPLATES, clip=clip, processor=processor)


def training_args(method: str, protocol: str, batch_size: int, **kw: Any) -> T.MetaPromptTrainingArguments:
    extra = {"target_domain": "target"} if protocol == "dg" else {}
    return T.MetaPromptTrainingArguments(
        method=method,
        protocol=protocol,
        per_device_train_batch_size=batch_size,
        learning_rate=LEARNING_RATE,
        output_dir=tempfile.gettempdir(),
        **extra,
        **kw,
    )


# ---------------------------------------------------------------------------------------------------- one step
def make_accelerator(mixed_precision: str, cpu: bool) -> Any:
    """An `Accelerator` with this mixed precision. Accelerate keeps one global state per process and refuses to
    change its precision, so the state is reset when an ablation asks for another one: accelerators made earlier
    without mixed precision keep a no-op `autocast()`, so fp32 and bf16 steps can be timed side by side."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    try:
        return Accelerator(cpu=cpu, mixed_precision=mixed_precision)
    except ValueError:
        AcceleratorState._reset_state()
        return Accelerator(cpu=cpu, mixed_precision=mixed_precision)


class TrainStep:
    """One optimizer step of `training.train_loop` for one method (no gradient accumulation, one process)."""

    def __init__(
        self,
        clip: Any,
        processor: Any,
        method: str,
        protocol: str,
        class_names: Sequence[str],
        pixel_values: torch.Tensor,
        labels: torch.Tensor,
        domains: torch.Tensor | None,
        *,
        mixed_precision: str = "no",
        **arg_overrides: Any,
    ) -> None:
        text_layers = clip.config.text_config.num_hidden_layers
        vision_layers = clip.config.vision_config.num_hidden_layers
        if "prompt_depth" not in arg_overrides and text_layers != vision_layers:
            # A prompt per layer of the shallower tower (the test-sized CLIP: 3 text, 2 vision layers), for every
            # method alike: MaPLe projects each text prompt layer into a vision prompt layer.
            arg_overrides["prompt_depth"] = min(text_layers, vision_layers)
        self.args = training_args(method, protocol, pixel_values.shape[0], **arg_overrides)
        self.accelerator = make_accelerator(mixed_precision, cpu=pixel_values.device.type == "cpu")
        model = new_model(clip, processor, self.args)
        method = self.args.build_method()  # its optimizer: SGD, or AdamW for MMRL
        optimizer = T.build_optimizer(
            model, self.args.learning_rate, self.args.momentum, self.args.weight_decay, kind=method.optimizer
        )
        self.ddp_model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.model = self.accelerator.unwrap_model(self.ddp_model)
        self.class_names = list(class_names)
        self.batch = {"pixel_values": pixel_values, "labels": labels, "domains": domains}
        self.step = TrainingStep(
            self.model,
            self.optimizer,
            self.class_names,
            meta=self.args.meta_settings(),
            method=method,
            source_domains=sorted(set(domains.tolist())) if domains is not None else None,
            seed=self.args.seed,
            accelerator=self.accelerator,
            module=self.ddp_model,
        )
        self.global_step = 0
        self.ddp_model.train()

    def __call__(self) -> None:
        with self.accelerator.accumulate(self.ddp_model):
            self.step.forward_backward(self.batch)
        self.step.update(step=self.global_step)
        self.global_step += 1


def b2n_batch(batch_size: int, n_classes: int, image_size: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(batch_size * 1009 + n_classes)
    pixel_values = torch.randn(batch_size, 3, image_size, image_size, generator=g).to(device)
    # Distinct classes (all of them when the batch is larger), as in a few-shot batch: then both class groups of
    # the base-to-new split hold samples and neither meta episode is skipped.
    labels = torch.randperm(max(batch_size, n_classes), generator=g)[:batch_size] % n_classes
    return pixel_values, labels


def dg_batch(
    batch_size: int, n_classes: int, n_domains: int, image_size: int, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pixel_values, labels = b2n_batch(batch_size, n_classes, image_size, device)
    domains = torch.arange(batch_size) % n_domains  # every source domain present, as --mix_domains ensures
    return pixel_values, labels, domains
