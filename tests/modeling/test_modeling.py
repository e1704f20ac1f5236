from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from metaprompt_hf import MetaPromptConfig, MetaPromptModel, get_metaprompt_model
from metaprompt_hf.testing import tiny_clip

CLASSES = ["cat", "dog", "big_red bus", "giraffe"]


def _vanilla_text(clip, processor, texts):
    ids = processor.tokenizer(texts, padding=True, return_tensors="pt")["input_ids"]
    return F.normalize(clip.get_text_features(input_ids=ids).pooler_output, dim=-1)


def _set_layer0_to_placeholder(model: MetaPromptModel) -> None:
    tok = model.tokenizer
    pid = tok(model.config.placeholder_token, add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        emb = model.clip.text_model.embeddings.token_embedding.weight[pid]
        model.text_prompts[0].copy_(emb.expand_as(model.text_prompts[0]))


def test_trainable_parameter_count_and_peft_format(model, capsys):
    tc, vc = model.clip.config.text_config, model.clip.config.vision_config
    expected = tc.num_hidden_layers * 2 * tc.hidden_size + vc.num_hidden_layers * 2 * vc.hidden_size
    trainable, total = model.get_nb_trainable_parameters()
    assert trainable == expected == 3 * 2 * 32 + 2 * 2 * 48
    assert total == expected + sum(p.numel() for p in model.clip.parameters())
    assert model.config.text_depth == 3 and model.config.vision_depth == 2  # "every layer" resolved
    model.print_trainable_parameters()
    line = capsys.readouterr().out.strip()
    assert (
        line
        == f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"
    )
    assert all(not p.requires_grad for p in model.clip.parameters())


def test_vit_b16_dimensions_give_30720_trainable_parameters():
    from transformers import CLIPModel

    from metaprompt_hf.testing import VIT_B16, tiny_clip_config

    with torch.device("meta"):  # shapes only: no memory, no weights
        clip = CLIPModel(tiny_clip_config(**VIT_B16))
        model = MetaPromptModel(clip, MetaPromptConfig())
    assert model.get_nb_trainable_parameters()[0] == 12 * 2 * 512 + 12 * 2 * 768 == 30720
    assert tuple(model.text_prompts.shape) == (12, 2, 512) and tuple(model.vision_prompts.shape) == (12, 2, 768)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_frozen_image_path_equals_get_image_features(attn, pixel_values):
    clip, processor = tiny_clip(attn_implementation=attn)
    model = MetaPromptModel(clip, MetaPromptConfig(), processor)
    ref = F.normalize(clip.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)
    torch.testing.assert_close(model.encode_frozen_image(pixel_values), ref, rtol=0, atol=1e-6)
    # the batched frozen+prompted call masks the prompts out of the frozen half
    with torch.no_grad():
        x, x_tilde = model.encode_image_pair(pixel_values)
    torch.testing.assert_close(x, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(x_tilde, model.encode_image(pixel_values).detach(), rtol=0, atol=1e-5)
    assert (x_tilde - x).abs().max() > 1e-4  # the prompts do change the prompted path


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_layer0_prompts_equal_to_placeholders_reproduce_clip_text_features(attn):
    clip, processor = tiny_clip(attn_implementation=attn)
    model = MetaPromptModel(clip, MetaPromptConfig(text_depth=1), processor)
    _set_layer0_to_placeholder(model)
    with torch.no_grad():
        ours = model.encode_text(CLASSES)
    ref = _vanilla_text(clip, processor, ["X X cat.", "X X dog.", "X X big red bus.", "X X giraffe."])
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_deep_prompts_keep_sequence_length_and_eos_pooling(model):
    from metaprompt_hf.modeling.injection import text_prompts_in_context

    ids = model._pad(model._tokenize(CLASSES, check_placeholders=True))
    eos = model.clip.config.text_config.eos_token_id
    eos_index = (ids == eos).int().argmax(-1)
    tm = model.clip.text_model
    with torch.no_grad(), text_prompts_in_context(model.text_prompts, 1):
        out = tm(input_ids=ids)
    assert out.last_hidden_state.shape[:2] == ids.shape  # replaced, not inserted
    pooled = out.last_hidden_state[torch.arange(len(ids)), eos_index]
    torch.testing.assert_close(out.pooler_output, pooled)
    with torch.no_grad():
        vanilla = tm(input_ids=ids).pooler_output
    assert (vanilla - out.pooler_output).abs().max() > 1e-4  # and the prompts reached the EOS row


def test_padding_and_class_order_do_not_change_features(model):
    with torch.no_grad():
        alone = torch.cat([model.encode_text([c]) for c in CLASSES])
        together = model.encode_text(CLASSES)
    torch.testing.assert_close(alone, together, rtol=0, atol=1e-5)


@pytest.mark.parametrize("chunk", [128, 8], ids=["one-call", "three-calls"])
def test_per_context_encoding_equals_one_context_at_a_time(model, chunk):
    """`encode_text_per_context`: K deep contexts in shared calls (each sequence carrying its own prompts at every
    prompted layer) give what K separate `encode_text` calls give; a context of the wrong shape is named."""
    model.class_chunk_size = chunk  # 4 classes: 32 contexts per call, or 2 (three calls for 5 contexts)
    contexts = model.text_prompts.detach()[None] + 0.1 * torch.randn(5, *model.text_prompts.shape)
    contexts.requires_grad_(True)
    together = model.encode_text_per_context(CLASSES, contexts)
    alone = torch.stack([model.encode_text(CLASSES, c) for c in contexts])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    weights = torch.arange(together.numel(), dtype=torch.float32).reshape(together.shape)
    (g_together,) = torch.autograd.grad((together * weights).sum(), contexts)
    (g_alone,) = torch.autograd.grad((alone * weights).sum(), contexts)
    torch.testing.assert_close(g_together, g_alone, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="contexts: expected shape"):
        model.encode_text_per_context(CLASSES, contexts[:, :1, :1])


def test_per_context_encoding_keeps_one_contexts_activations(model, monkeypatch):
    """Memory stays at one call's activations: with more classes than `class_chunk_size` every context but the last
    is checkpointed as a whole (else the last class chunk of each would stay alive), and with shared calls every
    call but the last."""
    from metaprompt_hf.modeling import modeling_metaprompt

    calls: list[str] = []
    real = modeling_metaprompt.checkpoint

    def counting(fn, *args, **kwargs):
        calls.append(fn.__name__)
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(modeling_metaprompt, "checkpoint", counting)
    contexts = (model.text_prompts.detach()[None] + torch.zeros(3, *model.text_prompts.shape)).requires_grad_(True)
    for chunk, expected in ((3, ["encode_text", "encode_text"]), (8, ["_text_features"])):  # 4 classes
        model.class_chunk_size = chunk
        calls.clear()
        model.encode_text_per_context(CLASSES, contexts)
        assert [c for c in calls if c != "_text_features" or chunk == 8] == expected, chunk
    calls.clear()
    with torch.no_grad():
        model.encode_text_per_context(CLASSES, contexts)
    assert calls == []


def test_chunked_text_encoding_matches_unchunked_values_and_gradients(clip_and_processor):
    clip, processor = clip_and_processor
    names = [f"class {i}" + " x" * (i % 4) for i in range(11)]
    grads, feats = [], []
    for chunk in (128, 3):
        torch.manual_seed(0)
        model = MetaPromptModel(clip, MetaPromptConfig(), processor, class_chunk_size=chunk)
        f = model.encode_text(names)
        (f * torch.arange(f.numel()).reshape(f.shape)).sum().backward()
        feats.append(f.detach())
        grads.append(model.text_prompts.grad.clone())
    torch.testing.assert_close(feats[0], feats[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_only_prompts_get_gradients_and_clip_is_bit_identical_after_a_step(model, pixel_values):
    before = {k: v.clone() for k, v in model.clip.state_dict().items()}
    prompts_before = [p.detach().clone() for p in model.prompt_parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model.train()
    out = model(pixel_values, CLASSES, labels=torch.tensor([0, 1, 2, 3]))
    out.loss.backward()
    assert all(p.grad is None for p in model.clip.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.prompt_parameters())
    optimizer.step()
    for k, v in model.clip.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(not torch.equal(a, b) for a, b in zip(prompts_before, model.prompt_parameters()))
    assert not model.clip.training  # the frozen CLIP stays in eval mode


def test_gradient_routing_of_the_three_logits(model, pixel_values):
    """CE(z^i) reaches only θ_v, CE(z^t) only θ_t, CE(z^o) both (docs/method.md §2)."""
    labels = torch.tensor([0, 1, 2, 3])
    for attr, reaches in (("logits_image", (False, True)), ("logits_text", (True, False)), ("logits", (True, True))):
        model.zero_grad(set_to_none=True)
        out = model(pixel_values, CLASSES)
        F.cross_entropy(getattr(out, attr), labels).backward()
        got = tuple(p.grad is not None and p.grad.abs().sum().item() > 0 for p in model.prompt_parameters())
        assert got == reaches, attr


def test_coupled_logits_and_eval_logits_are_z_o(model, pixel_values):
    with torch.no_grad():
        out = model(pixel_values, CLASSES, return_zero_shot=True)
    s = model.logit_scale
    x, xt, t, h = out.frozen_image_embeds, out.image_embeds, out.text_embeds, out.template_embeds
    torch.testing.assert_close(out.logits_image, s * xt @ h.T)
    torch.testing.assert_close(out.logits_text, s * x @ t.T)
    torch.testing.assert_close(out.logits, 0.5 * (out.logits_image + out.logits_text))
    torch.testing.assert_close(out.logits_zero_shot, s * x @ h.T)
    ref = F.normalize(
        model.clip.get_text_features(
            input_ids=model.tokenizer(["a photo of a cat"], return_tensors="pt")["input_ids"]
        ).pooler_output,
        dim=-1,
    )
    torch.testing.assert_close(h[0:1], ref, rtol=0, atol=1e-5)
    assert torch.allclose(s, model.clip.logit_scale.exp())


def test_template_ensemble_is_mean_of_normalised_then_renormalised(clip_and_processor):
    clip, processor = clip_and_processor
    templates = ["a photo of a {}", "art of the {}"]
    model = MetaPromptModel(clip, MetaPromptConfig(templates=templates), processor)
    each = [_vanilla_text(clip, processor, [t.format(c) for c in CLASSES[:2]]) for t in templates]
    torch.testing.assert_close(
        model.encode_templates(CLASSES[:2]), F.normalize(each[0] + each[1], dim=-1), atol=1e-5, rtol=0
    )


def test_ivlp_and_coop_configurations(clip_and_processor, pixel_values):
    clip, processor = clip_and_processor
    ivlp = MetaPromptModel(clip, MetaPromptConfig(coupled_branches=False), processor)
    with torch.no_grad():
        out = ivlp(pixel_values, CLASSES)
    assert out.logits_image is None and out.template_embeds is None and out.frozen_image_embeds is None
    torch.testing.assert_close(out.logits, ivlp.logit_scale * out.image_embeds @ out.text_embeds.T)
    coop = MetaPromptModel(clip, MetaPromptConfig(n_pro=0, text_depth=1, coupled_branches=False), processor)
    assert coop.vision_prompts is None and tuple(coop.text_prompts.shape) == (1, 2, 32)
    with torch.no_grad():
        out = coop(pixel_values, CLASSES)
    ref = F.normalize(clip.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)
    torch.testing.assert_close(out.image_embeds, ref, atol=1e-6, rtol=0)


def test_ctx_init_of_the_wrong_length_is_rejected(clip_and_processor):
    clip, processor = clip_and_processor
    assert len(processor.tokenizer("a photo", add_special_tokens=False)["input_ids"]) == 6  # byte-level tokens
    with pytest.raises(ValueError, match="ctx_init"):
        MetaPromptModel(clip, MetaPromptConfig(ctx_init="a photo"), processor)


def test_ctx_init_matching_length(clip_and_processor):
    clip, processor = clip_and_processor
    model = MetaPromptModel(clip, MetaPromptConfig(n_ctx=2, ctx_init="ab", text_depth=1), processor)
    ids = processor.tokenizer("ab", add_special_tokens=False)["input_ids"]
    torch.testing.assert_close(model.text_prompts[0], clip.text_model.embeddings.token_embedding.weight[ids])
    with torch.no_grad():
        ours = model.encode_text(["cat"])
    torch.testing.assert_close(ours, _vanilla_text(clip, processor, ["ab cat."]), atol=1e-5, rtol=0)


def test_predict_on_pil_images_and_feature_caches(model):
    rng = np.random.default_rng(0)
    images = [Image.fromarray((rng.random((40, 56, 3)) * 255).astype("uint8")) for _ in range(3)]
    images.append(Image.fromarray((rng.random((30, 30)) * 255).astype("uint8")))  # greyscale is converted
    calls = []
    original = model._encode_ids_chunked
    model._encode_ids_chunked = lambda rows, prompts: calls.append(prompts is None) or original(rows, prompts)
    probs, zs = model.predict(images, ["dog", "cat", "giraffe"], return_zero_shot=True)
    assert probs.shape == zs.shape == (4, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(4))
    assert calls == [False, True]  # one prompted, one template encoding
    again = model.predict(images, ["dog", "cat", "giraffe"])
    assert calls == [False, True]  # both served from the cache
    torch.testing.assert_close(again, probs)
    with torch.no_grad():
        model.text_prompts.add_(torch.randn_like(model.text_prompts))  # a step: the prompted cache must not go stale
    changed = model.predict(images, ["dog", "cat", "giraffe"])
    assert calls == [False, True, False]
    assert not torch.allclose(changed, probs)


def test_predict_accepts_one_image_an_array_or_a_datasets_column(model):
    import datasets

    rng = np.random.default_rng(1)
    arrays = [(rng.random((32, 32, 3)) * 255).astype("uint8") for _ in range(3)]
    names = ["dog", "cat", "giraffe"]
    expected = model.predict([Image.fromarray(a) for a in arrays], names)
    column = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(a) for a in arrays]}, features=datasets.Features({"image": datasets.Image()})
    )["image"]
    torch.testing.assert_close(model.predict(column, names), expected)  # dataset["image"], not a list
    torch.testing.assert_close(model.predict(arrays[0], names), expected[:1])  # one (H, W, 3) array
    torch.testing.assert_close(model.predict(Image.fromarray(arrays[1]), names), expected[1:2])
    with pytest.raises(ValueError, match="images: expected PIL"):
        model.predict(42, names)


def test_bad_inputs_are_named(model):
    with pytest.raises(ValueError, match="class_names"):
        model.predict(torch.randn(1, 3, 32, 32), [])
    with pytest.raises(ValueError, match=r"class_names\[1\]"):
        model.predict(torch.randn(1, 3, 32, 32), ["cat", ""])
    with pytest.raises(ValueError, match="class_names"):
        model.predict(torch.randn(1, 3, 32, 32), "cat, dog")
    with pytest.raises(ValueError, match="pixel_values"):
        model.predict(torch.randn(3, 3), ["a", "b"])
    with pytest.raises(TypeError, match="CLIPModel"):
        MetaPromptModel(torch.nn.Linear(2, 2))
    clip, _ = tiny_clip()
    with pytest.raises(ValueError, match="processor"):
        MetaPromptModel(clip).encode_text(["cat"])
    with pytest.raises(ValueError, match="text_depth"):
        MetaPromptModel(clip, MetaPromptConfig(text_depth=7))


def test_bf16_and_gradient_checkpointing(pixel_values):
    clip, processor = tiny_clip()
    torch.manual_seed(0)
    ref_model = MetaPromptModel(clip, MetaPromptConfig(), processor, class_chunk_size=2).train()
    labels = torch.tensor([0, 1, 2, 3])
    ref_model(pixel_values, CLASSES, labels=labels).loss.backward()
    ref = [p.grad.clone() for p in ref_model.prompt_parameters()]

    clip2, processor2 = tiny_clip()
    torch.manual_seed(0)
    ckpt_model = MetaPromptModel(clip2, MetaPromptConfig(), processor2, class_chunk_size=2)
    ckpt_model.gradient_checkpointing_enable()
    ckpt_model.train()
    assert ckpt_model.is_gradient_checkpointing
    assert all(layer.training for layer in clip2.vision_model.encoder.layers)
    assert not any(layer.self_attn.training for layer in clip2.vision_model.encoder.layers)
    calls = []
    clip2.vision_model.encoder.layers[0]._gradient_checkpointing_func = lambda fn, *a, **k: (
        calls.append(1) or torch.utils.checkpoint.checkpoint(fn, *a, use_reentrant=False, **k)
    )
    ckpt_model(pixel_values, CLASSES, labels=labels).loss.backward()
    assert calls  # transformers' checkpointing really ran
    for a, b in zip(ref, ckpt_model.prompt_parameters()):
        torch.testing.assert_close(a, b.grad, rtol=1e-4, atol=1e-6)

    clip3, processor3 = tiny_clip()
    bf16 = MetaPromptModel(clip3.to(torch.bfloat16), MetaPromptConfig(), processor3)
    out = bf16(pixel_values, CLASSES, labels=labels)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.logits.dtype == torch.float32
    assert bf16.text_prompts.dtype == torch.float32 and bf16.text_prompts.grad is not None
    assert bf16.predict(pixel_values, CLASSES).shape == (4, 4)


def test_get_metaprompt_model_records_the_base_model_name(clip_and_processor):
    clip, processor = clip_and_processor
    clip.name_or_path = "testorg/tiny-clip"
    model = get_metaprompt_model(clip, MetaPromptConfig(n_ctx=4, n_pro=4), processor)
    assert model.config.base_model_name_or_path == "testorg/tiny-clip"
    assert tuple(model.vision_prompts.shape) == (2, 4, 48)
