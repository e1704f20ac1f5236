from __future__ import annotations

import dataclasses
import json

import pytest

from metaprompt_hf import CONFIG_NAME, MetaPromptConfig, __version__, templates_for_dataset


def test_defaults_are_the_papers_base_to_new_setting():
    config = MetaPromptConfig()
    assert (config.n_ctx, config.n_pro, config.init_std) == (2, 2, 0.02)
    assert config.text_depth is None and config.vision_depth is None  # every layer of the base model
    assert config.templates == ["a photo of a {}"]
    assert config.coupled_branches is True
    assert config.method == "METAPROMPT"
    assert config.metaprompt_version == __version__


def test_every_field_has_help_text():
    for f in dataclasses.fields(MetaPromptConfig):
        assert f.metadata.get("help"), f"field {f.name} has no help text"


@pytest.mark.parametrize(
    "kwargs, field_name",
    [
        ({"method": "LORA"}, "method"),
        ({"n_ctx": -1}, "n_ctx"),
        ({"n_ctx": 1.5}, "n_ctx"),
        ({"n_pro": True}, "n_pro"),
        ({"text_depth": 0}, "text_depth"),
        ({"vision_depth": -2}, "vision_depth"),
        ({"text_depth": 5, "text_num_layers": 3}, "text_depth"),
        ({"init_std": 0}, "init_std"),
        ({"init_std": "big"}, "init_std"),
        ({"templates": []}, "templates"),
        ({"templates": ["no placeholder"]}, "templates[0]"),
        ({"templates": ["a {}", "{} and {}"]}, "templates[1]"),
        ({"placeholder_token": ""}, "placeholder_token"),
        ({"placeholder_token": "two words"}, "placeholder_token"),
        ({"ctx_init": "a photo", "n_ctx": 0}, "ctx_init"),
        ({"base_model_name_or_path": 3}, "base_model_name_or_path"),
        ({"text_hidden_size": 0}, "text_hidden_size"),
        ({"coupled_branches": "false"}, "coupled_branches"),
        ({"coupled_branches": 0}, "coupled_branches"),
        ({"inference_mode": "no"}, "inference_mode"),
        ({"templates": ["a {} {x}"]}, "templates[0]"),
        ({"templates": ["a {0}"]}, "templates[0]"),
        ({"templates": ["a {:>9}"]}, "templates[0]"),
        ({"templates": ["a {!r}"]}, "templates[0]"),
        ({"templates": ["a {"]}, "templates[0]"),
        ({"templates": ["a {}", 3]}, "templates[1]"),
        ({"templates": 7}, "templates"),
        ({"init_std": float("nan")}, "init_std"),
        ({"init_std": float("inf")}, "init_std"),
        ({"placeholder_token": " X"}, "placeholder_token"),
        ({"placeholder_token": "X\tY"}, "placeholder_token"),
        ({"metaprompt_version": 1}, "metaprompt_version"),
        ({"revision": 3}, "revision"),
    ],
)
def test_invalid_values_raise_naming_the_field(kwargs, field_name):
    with pytest.raises(ValueError) as err:
        MetaPromptConfig(**kwargs)
    assert str(err.value).startswith(field_name), str(err.value)


def test_single_template_string_is_accepted():
    assert MetaPromptConfig(templates="{} texture").templates == ["{} texture"]


def test_json_round_trip(tmp_path):
    config = MetaPromptConfig(n_ctx=4, n_pro=4, templates=["a {}", "art of the {}"], base_model_name_or_path="o/m")
    path = config.save_pretrained(tmp_path)
    assert path.endswith(CONFIG_NAME)
    data = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert list(data) == sorted(data)  # sort_keys, as PEFT writes it
    assert MetaPromptConfig.from_pretrained(tmp_path) == config
    assert MetaPromptConfig.from_pretrained(tmp_path / CONFIG_NAME) == config


def test_save_refuses_to_overwrite_unless_asked(tmp_path):
    MetaPromptConfig().save_pretrained(tmp_path)
    with pytest.raises(FileExistsError, match=CONFIG_NAME):
        MetaPromptConfig(n_ctx=3).save_pretrained(tmp_path)
    assert MetaPromptConfig.from_pretrained(tmp_path).n_ctx == 2  # nothing lost
    MetaPromptConfig(n_ctx=3).save_pretrained(tmp_path, overwrite=True)
    assert MetaPromptConfig.from_pretrained(tmp_path).n_ctx == 3


def test_unknown_keys_are_named(tmp_path):
    data = MetaPromptConfig().to_dict() | {"n_ctxx": 3}
    (tmp_path / CONFIG_NAME).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="n_ctxx"):
        MetaPromptConfig.from_pretrained(tmp_path)


def test_invalid_json_names_the_file(tmp_path):
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ValueError, match=CONFIG_NAME):
        MetaPromptConfig.from_pretrained(tmp_path)


def test_missing_folder_or_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        MetaPromptConfig.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such local folder"):
        MetaPromptConfig.from_pretrained(str(tmp_path / "nope" / "deeper"))


def test_template_presets():
    assert templates_for_dataset("dtd") == ["{} texture"]
    assert templates_for_dataset("EuroSAT") == ["a centered satellite photo of {}"]
    assert templates_for_dataset("PACSFS") == ["a photo of a {}"]
    assert len(templates_for_dataset("timm/imagenet-1k-wds")) == 8
    assert templates_for_dataset("my-own-data") == ["a photo of a {}"]
    assert templates_for_dataset(None) == ["a photo of a {}"]


@pytest.mark.parametrize(
    "template, ok",
    [("a photo of a {}", True), ("{} texture", True), ("a {{braced}} {}", True), ("a {} {}", False)],
)
def test_templates_accept_exactly_one_field_and_escaped_braces(template, ok):
    if ok:
        assert MetaPromptConfig(templates=[template]).templates == [template]
        assert "{" not in template.format("cat").replace("{braced}", "")
    else:
        with pytest.raises(ValueError, match=r"templates\[0\]"):
            MetaPromptConfig(templates=[template])


def test_a_config_file_with_a_string_boolean_names_the_file_and_the_field(tmp_path):
    data = MetaPromptConfig().to_dict() | {"coupled_branches": "false"}
    (tmp_path / CONFIG_NAME).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"{CONFIG_NAME}: coupled_branches: expected true or false"):
        MetaPromptConfig.from_pretrained(tmp_path)
