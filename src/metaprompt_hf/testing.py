"""Random-weight CLIPs built in code, for tests and cost benchmarks (timm style: never a download).

`tiny_clip()` gives a test-sized CLIP (hidden 32, as in transformers' own CLIP tests) with a byte-level CLIP BPE
tokenizer that has no merges, so any text tokenizes offline. `clip_config_like("ViT-B/16")` gives the real
dimensions for cost measurements, where weights do not matter.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

try:  # transformers >= 5: the Pillow image processor, so no torchvision is needed
    from transformers import CLIPImageProcessorPil as _ImageProcessor
except ImportError:  # pragma: no cover
    from transformers import CLIPImageProcessor as _ImageProcessor

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable-character table."""
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def byte_level_tokenizer() -> CLIPTokenizer:
    """A CLIP BPE tokenizer with the 512 byte-level tokens and no merges (514 ids; BOS 512, EOS 513 = pad)."""
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[])


def image_processor(image_size: int) -> Any:
    """CLIP's preprocessing (resize shorter side, centre crop, CLIP mean/std) at `image_size` pixels."""
    return _ImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )


def tiny_clip_config(**overrides: Any) -> CLIPConfig:
    """A test-sized CLIPConfig. Text and vision widths and depths differ on purpose, so that code mixing them up
    fails. `overrides` may hold `text_*` / `vision_*` keys (e.g. `text_num_hidden_layers=4`) or top-level keys."""
    text = dict(
        vocab_size=514,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
    )
    vision = dict(
        hidden_size=48,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    top: dict[str, Any] = dict(projection_dim=16)
    for key, value in overrides.items():
        if key.startswith("text_"):
            text[key[5:]] = value
        elif key.startswith("vision_"):
            vision[key[7:]] = value
        else:
            top[key] = value
    return CLIPConfig(text_config=text, vision_config=vision, **top)


def tiny_clip(seed: int = 0, attn_implementation: str = "sdpa", **overrides: Any) -> tuple[CLIPModel, CLIPProcessor]:
    """A random-weight tiny `CLIPModel` and its `CLIPProcessor`, deterministic in `seed`."""
    config = tiny_clip_config(**overrides)
    torch.manual_seed(seed)
    model = CLIPModel._from_config(config, attn_implementation=attn_implementation).eval()
    processor = CLIPProcessor(
        image_processor=image_processor(config.vision_config.image_size), tokenizer=byte_level_tokenizer()
    )
    return model, processor


VIT_B16 = dict(
    text_hidden_size=512,
    text_intermediate_size=2048,
    text_num_hidden_layers=12,
    text_num_attention_heads=8,
    vision_hidden_size=768,
    vision_intermediate_size=3072,
    vision_num_hidden_layers=12,
    vision_num_attention_heads=12,
    vision_image_size=224,
    vision_patch_size=16,
    projection_dim=512,
)


def byte_level_sentence_tokenizer(max_length: int = 64) -> Any:
    """A SigLIP-like fast tokenizer: byte-level tokens without merges, words split at spaces, NO start token and an
    end token `</s>` (also the pad token) appended, as SigLIP's SentencePiece tokenizer does. 259 ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = list(bytes_to_unicode().values())
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="</s>", pad_token="</s>", unk_token="<unk>", model_max_length=max_length
    )


def tiny_siglip_config(**overrides: Any) -> Any:
    """A test-sized SiglipConfig (text: width 32, 3 layers, 64 positions, head to 48; vision: width 48, 2 layers,
    attention pooling head); `overrides` as in `tiny_clip_config`."""
    from transformers import SiglipConfig

    text = dict(
        vocab_size=259,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=64,
        pad_token_id=1,
        eos_token_id=1,
        bos_token_id=None,
        projection_size=48,  # the text head maps into the vision width, as in every released SigLIP
    )
    vision = dict(
        hidden_size=48, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    )
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        if key.startswith("text_"):
            text[key[5:]] = value
        elif key.startswith("vision_"):
            vision[key[7:]] = value
        else:
            top[key] = value
    return SiglipConfig(text_config=text, vision_config=vision, **top)


def tiny_siglip(seed: int = 0, attn_implementation: str = "sdpa", **overrides: Any) -> tuple[Any, Any]:
    """A random-weight tiny `SiglipModel` and its `SiglipProcessor` (mean/std 0.5, no start token), deterministic
    in `seed`. The logit scale and bias are set to SigLIP's initial values (log 10, -10)."""
    import math

    from transformers import SiglipModel, SiglipProcessor

    try:
        from transformers import SiglipImageProcessorPil as SiglipImageProcessor
    except ImportError:  # pragma: no cover
        from transformers import SiglipImageProcessor

    config = tiny_siglip_config(**overrides)
    torch.manual_seed(seed)
    model = SiglipModel._from_config(config, attn_implementation=attn_implementation).eval()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-10.0)
    size = config.vision_config.image_size
    image_proc = SiglipImageProcessor(
        size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=2
    )
    tokenizer = byte_level_sentence_tokenizer(config.text_config.max_position_embeddings)
    return model, SiglipProcessor(image_processor=image_proc, tokenizer=tokenizer)
