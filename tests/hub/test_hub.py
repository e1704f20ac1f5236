from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
import yaml
from conftest import RecordingApi
from safetensors import safe_open
from safetensors.torch import save_file

from metaprompt_hf import CONFIG_NAME, WEIGHTS_NAME, MetaPromptConfig, MetaPromptModel
from metaprompt_hf.testing import tiny_clip

CLASSES = ["cat", "dog", "giraffe"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _trained(clip, processor, **config) -> MetaPromptModel:
    torch.manual_seed(3)
    model = MetaPromptModel(clip, MetaPromptConfig(**config), processor)
    with torch.no_grad():
        for p in model.prompt_parameters():
            p.normal_()  # clearly different from the N(0, 0.02²) init of a fresh adapter
    return model


def _put_in_hub_cache(hf_home: str, repo_id: str, folder: str, commit: str = COMMIT) -> None:
    """Lay out `folder` as the Hugging Face cache would after a download (`huggingface_hub` cache layout)."""
    repo_dir = os.path.join(hf_home, "hub", f"models--{repo_id.replace('/', '--')}")
    snapshot = os.path.join(repo_dir, "snapshots", commit)
    shutil.copytree(folder, snapshot, dirs_exist_ok=True)
    os.makedirs(os.path.join(repo_dir, "refs"), exist_ok=True)
    with open(os.path.join(repo_dir, "refs", "main"), "w") as f:
        f.write(commit)


def test_round_trip_into_a_fresh_base(tmp_path, pixel_values):
    clip, processor = tiny_clip(seed=0)
    model = _trained(clip, processor)
    model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted([CONFIG_NAME, WEIGHTS_NAME, "README.md"])  # two files and a card
    with safe_open(str(tmp_path / WEIGHTS_NAME), "pt") as f:
        assert sorted(f.keys()) == ["text_prompts", "vision_prompts"]  # the prompts only, never CLIP
        assert f.metadata()["format"] == "pt"
    assert os.path.getsize(tmp_path / WEIGHTS_NAME) < 4096
    saved = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert saved["inference_mode"] is True and saved["text_hidden_size"] == 32

    fresh_clip, fresh_processor = tiny_clip(seed=0)  # same weights, new objects
    loaded = MetaPromptModel.from_pretrained(tmp_path, base_model=fresh_clip, processor=fresh_processor)
    for key, value in model.prompt_state_dict().items():
        assert torch.equal(loaded.prompt_state_dict()[key], value)
    assert all(not p.requires_grad for p in loaded.prompt_parameters()) and not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values, CLASSES).logits, model(pixel_values, CLASSES).logits)
    trainable = MetaPromptModel.from_pretrained(
        tmp_path, base_model=tiny_clip()[0], processor=processor, is_trainable=True
    )
    assert all(p.requires_grad for p in trainable.prompt_parameters()) and trainable.training


def test_save_refuses_to_overwrite_unless_asked(tmp_path):
    clip, processor = tiny_clip()
    _trained(clip, processor).save_pretrained(tmp_path)
    before = (tmp_path / WEIGHTS_NAME).read_bytes()
    other = MetaPromptModel(clip, MetaPromptConfig(), processor)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        other.save_pretrained(tmp_path)
    assert (tmp_path / WEIGHTS_NAME).read_bytes() == before
    other.save_pretrained(tmp_path, overwrite=True)
    assert (tmp_path / WEIGHTS_NAME).read_bytes() != before
    assert sorted(os.listdir(tmp_path)) == sorted([CONFIG_NAME, WEIGHTS_NAME, "README.md"])  # no temporary files


def test_folder_without_safetensors_is_an_error_and_pickle_is_never_loaded(tmp_path):
    clip, processor = tiny_clip()
    model = _trained(clip, processor)
    model.save_pretrained(tmp_path)
    os.remove(tmp_path / WEIGHTS_NAME)
    torch.save(model.prompt_state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME) as err:
        MetaPromptModel.from_pretrained(tmp_path, base_model=clip, processor=processor)
    assert "pickle" in str(err.value)


def _write_state(folder, state):
    save_file(state, str(folder / WEIGHTS_NAME), {"format": "pt"})


@pytest.mark.parametrize(
    "mutate, pattern",
    [
        (lambda s: s.pop("vision_prompts"), r"missing \['vision_prompts'\]"),
        (lambda s: s.update(extra=torch.zeros(1)), r"unexpected \['extra'\]"),
        (
            lambda s: s.update(text_prompts=torch.zeros(3, 4, 32)),
            r"'text_prompts' has shape \(3, 4, 32\).*\(3, 2, 32\)",
        ),
    ],
)
def test_strict_loading_names_key_and_shapes(tmp_path, mutate, pattern):
    clip, processor = tiny_clip()
    model = _trained(clip, processor)
    model.save_pretrained(tmp_path)
    state = {k: v.clone() for k, v in model.prompt_state_dict().items()}
    mutate(state)
    _write_state(tmp_path, state)
    with pytest.raises(ValueError, match=pattern):
        MetaPromptModel.from_pretrained(tmp_path, base_model=clip, processor=processor)


def test_base_model_that_does_not_fit_is_named(tmp_path):
    clip, processor = tiny_clip()
    clip.name_or_path = "testorg/tiny-clip"
    _trained(clip, processor).save_pretrained(tmp_path)
    wider, _ = tiny_clip(text_hidden_size=64)
    wider.name_or_path = "someone/wider-clip"
    with pytest.raises(ValueError, match=r"text_hidden_size.*32.*someone/wider-clip.*64"):
        MetaPromptModel.from_pretrained(tmp_path, base_model=wider, processor=processor)
    shallower, _ = tiny_clip(vision_num_hidden_layers=1)
    with pytest.raises(ValueError, match="vision_num_layers"):
        MetaPromptModel.from_pretrained(tmp_path, base_model=shallower, processor=processor)


def test_corrupt_safetensors_and_missing_base_are_clear_errors(tmp_path):
    clip, processor = tiny_clip()
    _trained(clip, processor).save_pretrained(tmp_path)
    (tmp_path / WEIGHTS_NAME).write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="safetensors"):
        MetaPromptModel.from_pretrained(tmp_path, base_model=clip, processor=processor)
    _trained(clip, processor).save_pretrained(tmp_path, overwrite=True)
    with pytest.raises(ValueError, match="base_model_name_or_path"):
        MetaPromptModel.from_pretrained(tmp_path)  # a CLIP built in code has no name to record


def test_from_pretrained_resolves_adapter_and_base_from_the_hub_cache(hf_home, tmp_path, pixel_values):
    clip, processor = tiny_clip(seed=5)
    base_dir = tmp_path / "base"
    clip.save_pretrained(base_dir)
    processor.save_pretrained(base_dir)
    _put_in_hub_cache(hf_home, "testorg/tiny-clip", str(base_dir))
    clip.name_or_path = "testorg/tiny-clip"
    model = _trained(clip, processor)
    assert model.config.base_model_name_or_path == "testorg/tiny-clip"
    model.save_pretrained(tmp_path / "adapter")
    _put_in_hub_cache(hf_home, "org/metaprompt-tiny", str(tmp_path / "adapter"))
    assert os.environ["HF_HUB_OFFLINE"] == "1"

    loaded = MetaPromptModel.from_pretrained("org/metaprompt-tiny")  # the snippet, offline
    probs = loaded.predict(pixel_values, ["dog", "cat", "giraffe"])
    assert probs.shape == (4, 3)
    torch.testing.assert_close(probs, model.predict(pixel_values, ["dog", "cat", "giraffe"]))
    assert loaded.clip.name_or_path.endswith(COMMIT) or "tiny-clip" in loaded.clip.name_or_path
    again = MetaPromptModel.from_pretrained("org/metaprompt-tiny", revision=COMMIT)
    assert torch.equal(again.text_prompts, loaded.text_prompts)
    with pytest.raises(FileNotFoundError, match="org/not-there"):
        MetaPromptModel.from_pretrained("org/not-there")


def _card_metadata(card: str) -> dict:
    _, header, _ = card.split("---\n", 2)
    return yaml.safe_load(header)


def test_push_to_hub_uploads_two_files_and_a_card_in_one_commit(tmp_path):
    clip, processor = tiny_clip()
    clip.name_or_path = "testorg/tiny-clip"
    model = _trained(clip, processor)
    api = RecordingApi()
    results = [{"protocol": "base2new", "dataset": "mini-shapes", "base": 91.25, "new": 70.5, "hm": 79.55}]
    pushed = model.push_to_hub("me/metaprompt-tiny", api=api, model_card_kwargs={"results": results}, private=True)
    assert pushed == "commit-info"
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    _, repo, files, kwargs = api.calls[1]
    assert repo == "me/metaprompt-tiny" and kwargs["repo_type"] == "model"
    assert sorted(files) == sorted([CONFIG_NAME, WEIGHTS_NAME, "README.md"])
    weights = tmp_path / WEIGHTS_NAME
    weights.write_bytes(files[WEIGHTS_NAME])
    with safe_open(str(weights), "pt") as f:
        assert torch.equal(f.get_tensor("text_prompts"), model.text_prompts.detach())
    assert json.loads(files[CONFIG_NAME])["base_model_name_or_path"] == "testorg/tiny-clip"
    card = files["README.md"].decode()
    meta = _card_metadata(card)
    assert meta["library_name"] == "metaprompt_hf"
    assert meta["base_model"] == "testorg/tiny-clip"
    assert meta["pipeline_tag"] == "zero-shot-image-classification"
    values = sorted(m["value"] for r in meta["model-index"][0]["results"] for m in r["metrics"])
    assert values == [70.5, 79.55, 91.25]
    assert 'MetaPromptModel.from_pretrained("me/metaprompt-tiny")' in card
    assert "2212.04196" in card


def test_saved_files_get_the_usual_permissions_not_mkstemps_0600(tmp_path):
    """Atomic writes go through a temporary file; the result must be as readable as a plain write would make it."""
    clip, processor = tiny_clip()
    old = os.umask(0o022)
    try:
        _trained(clip, processor).save_pretrained(tmp_path)
    finally:
        os.umask(old)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_base_model_kwargs_pass_through_and_prompts_stay_fp32_under_dtype_and_to(
    tiny_clip_dir, tmp_path, pixel_values
):
    from metaprompt_hf.backbones import load_base_model, load_base_processor

    torch.manual_seed(0)
    model = MetaPromptModel(load_base_model(tiny_clip_dir), MetaPromptConfig(), load_base_processor(tiny_clip_dir))
    model.save_pretrained(tmp_path)
    loaded = MetaPromptModel.from_pretrained(
        tmp_path, torch_dtype=torch.bfloat16, attn_implementation="eager", local_files_only=True
    )
    cast = MetaPromptModel.from_pretrained(tmp_path, attn_implementation="eager").to(torch.bfloat16)
    for m in (loaded, cast):
        assert m.clip.dtype == torch.bfloat16 and m.clip.config._attn_implementation == "eager"
        assert all(p.dtype == torch.float32 for p in m.prompt_parameters())  # the one rule: fp32 master copies
    assert torch.equal(loaded.predict(pixel_values, ["a", "b"]), cast.predict(pixel_values, ["a", "b"]))
    with pytest.raises(ValueError, match="pass one"):
        MetaPromptModel.from_pretrained(tmp_path, dtype=torch.float16, torch_dtype=torch.bfloat16)


def test_the_model_is_a_hub_mixin_with_its_save_push_and_load_arguments(tmp_path):
    """`ModelHubMixin`'s conventions: `save_pretrained(push_to_hub=True, repo_id=..., model_card_kwargs=...)`,
    `push_to_hub(branch=..., create_pr=..., *_patterns=...)`, and a `README.md` card that is never overwritten
    unless asked."""
    from huggingface_hub import ModelHubMixin

    clip, processor = tiny_clip()
    model = _trained(clip, processor)
    assert isinstance(model, ModelHubMixin)
    api = RecordingApi()
    results = [{"protocol": "base2new", "dataset": "mini-shapes", "base": 91.25, "new": 70.5, "hm": 79.55}]
    folder = tmp_path / "adapter"
    got = model.save_pretrained(
        folder,
        push_to_hub=True,
        repo_id="me/mixin",
        model_card_kwargs={"results": results, "model_name": "mixin-test"},
        api=api,
        branch="dev",
        create_pr=True,
        ignore_patterns=["*.md"],
    )
    assert got == "commit-info"
    _, repo, files, kwargs = api.calls[-1]
    assert repo == "me/mixin" and kwargs["revision"] == "dev" and kwargs["create_pr"] is True
    assert kwargs["ignore_patterns"] == ["*.md"]  # passed on to upload_folder, which applies it
    local_card = (folder / "README.md").read_text()
    assert "79.55" in local_card and _card_metadata(local_card)["model-index"][0]["name"] == "mixin-test"
    pushed_card = files["README.md"].decode()  # the same kwargs, plus the repo it now lives in
    assert "79.55" in pushed_card and 'MetaPromptModel.from_pretrained("me/mixin")' in pushed_card
    from safetensors.torch import load

    pushed, local = load(files[WEIGHTS_NAME]), load((folder / WEIGHTS_NAME).read_bytes())
    assert pushed.keys() == local.keys() and all(torch.equal(pushed[k], local[k]) for k in local)

    # A hand-written card is kept, as the mixin keeps it; asking for a generated one without overwrite is an error.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my own card")
    model.save_pretrained(mine)
    assert (mine / "README.md").read_text() == "my own card" and (mine / WEIGHTS_NAME).is_file()
    other = tmp_path / "other"
    other.mkdir()
    (other / "README.md").write_text("my own card")
    with pytest.raises(FileExistsError, match="README.md"):
        model.save_pretrained(other, model_card_kwargs={"results": results})
    assert os.listdir(other) == ["README.md"]  # refused before anything was written
    model.save_pretrained(other, model_card_kwargs={"results": results}, overwrite=True)
    assert "79.55" in (other / "README.md").read_text()

    # from_pretrained takes the mixin's keyword arguments; the mixin's loading hook is the same code.
    loaded = MetaPromptModel.from_pretrained(
        folder, base_model=clip, processor=processor, force_download=False, token=False, local_files_only=True
    )
    via_hook = MetaPromptModel._from_pretrained(
        model_id=str(folder),
        revision=None,
        cache_dir=None,
        force_download=False,
        local_files_only=True,
        token=None,
        base_model=clip,
        processor=processor,
    )
    for key, value in model.prompt_state_dict().items():
        assert torch.equal(loaded.prompt_state_dict()[key], value) and torch.equal(
            via_hook.prompt_state_dict()[key], value
        )
    with pytest.raises(TypeError, match="not_an_option"):
        MetaPromptModel.from_pretrained(folder, base_model=clip, processor=processor, not_an_option=1)
