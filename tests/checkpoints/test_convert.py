"""Importing official checkpoints (`python -m metaprompt_hf.convert`, `metaprompt_hf.checkpoints`).

Checkpoints are written here as the official trainers write them: Dassl's `torch.save({"state_dict", "epoch",
"optimizer", "scheduler", "val_result"})` with each method's official key names, a pickled LR scheduler object
inside the scheduler entry (as Dassl's warm-up scheduler holds its successor), and a payload whose `__reduce__`
would write a marker file. The MetaPrompt checkpoint carries the official prompt values recorded in
tests/fixtures/fidelity, and the converted adapter's eval logits are compared with the official model's recorded
logits (the tolerance of tests/test_fidelity.py: 1e-4).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import shutil
import sys
import types
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from metaprompt_hf import MetaPromptModel
from metaprompt_hf.checkpoints import (
    OFFICIAL_LAYOUTS,
    CheckpointError,
    Stub,
    TensorRef,
    extract_prompts,
    find_state_dict,
    read_torch_checkpoint,
)
from metaprompt_hf.convert import main
from metaprompt_hf.methods import METHODS, get_method

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fidelity"
PACKAGE_TOKENIZER = Path(__file__).resolve().parents[2] / "src" / "metaprompt_hf" / "assets" / "mini-clip"
TINY = {"text_hidden_size": 32, "vision_hidden_size": 48, "text_num_layers": 3, "vision_num_layers": 2}


class WritesMarker:
    """Unpickling this runs `os.system("touch <marker>")` under a full unpickler."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def scheduler_entry() -> dict:
    """Dassl's scheduler `state_dict()`: plain values plus its successor, a whole scheduler object (with the
    optimizer and its momentum buffers inside)."""
    p = torch.nn.Parameter(torch.randn(2, 3))
    opt = torch.optim.SGD([p], lr=0.0035, momentum=0.9, weight_decay=5e-4)
    p.grad = torch.ones_like(p)
    opt.step()
    return {
        "successor": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5),
        "warmup_epoch": 1,
        "cons_lr": 1e-5,
        "last_epoch": 5,
    }, opt.state_dict()


def save_dassl(path: Path, state_dict: dict, marker: str | None = None) -> str:
    sched, optim = scheduler_entry()
    ckpt = {"state_dict": OrderedDict(state_dict), "epoch": 5, "optimizer": optim, "scheduler": sched}
    ckpt["val_result"] = WritesMarker(marker) if marker else None
    torch.save(ckpt, path)
    return str(path)


def frozen_clip_keys(g: torch.Generator) -> dict[str, torch.Tensor]:
    """A few keys of the frozen CLIP as whole-model checkpoints carry them (values irrelevant)."""
    return {
        "logit_scale": torch.tensor(4.6052),
        "image_encoder.conv1.weight": torch.randn(8, 3, 2, 2, generator=g),
        "image_encoder.transformer.resblocks.0.attn.in_proj_weight": torch.randn(12, 4, generator=g),
        "text_encoder.positional_embedding": torch.randn(7, 4, generator=g),
        "text_encoder.transformer.resblocks.1.ln_1.weight": torch.randn(4, generator=g),
    }


# ---------------------------------------------------------------------------------------------------- the reader
def test_malicious_reduce_and_scheduler_objects_are_stubbed_never_run(tmp_path):
    marker = tmp_path / "pwned"
    ctx = torch.randn(2, 32)
    path = save_dassl(tmp_path / "model.pth.tar-5", {"ctx": ctx}, marker=str(marker))
    assert not marker.exists()

    ckpt, reader = read_torch_checkpoint(path)
    try:
        assert not marker.exists(), "the restricted reader ran the payload"
        assert isinstance(ckpt["val_result"], Stub) and ckpt["val_result"].stub_of in ("posix.system", "os.system")
        successor = ckpt["scheduler"]["successor"]
        assert isinstance(successor, Stub) and successor.stub_of == "torch.optim.lr_scheduler.CosineAnnealingLR"
        assert ckpt["scheduler"]["last_epoch"] == 5 and ckpt["epoch"] == 5
        ref = ckpt["state_dict"]["ctx"]
        assert isinstance(ref, TensorRef) and ref.shape == (2, 32)
        assert torch.equal(ref.materialize(), ctx)
        assert {"torch.optim.lr_scheduler.CosineAnnealingLR", "torch.optim.sgd.SGD"} <= reader.stubbed
    finally:
        reader.close()

    # Positive control: the payload is live — torch's full unpickler writes the marker, weights_only refuses.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert not marker.exists()
    torch.load(path, weights_only=False)
    assert marker.exists(), "the payload did not work, so the test above proved nothing"


def test_a_class_from_a_module_that_is_not_installed_is_never_imported(tmp_path):
    """Dassl's own warm-up scheduler class: its module exists only in the official clone."""
    module = types.ModuleType("dassl_lr_scheduler_stand_in")

    class ConstantWarmupScheduler:
        def __init__(self) -> None:
            self.successor = None
            self.cons_lr = 1e-5

    ConstantWarmupScheduler.__module__ = module.__name__
    ConstantWarmupScheduler.__qualname__ = "ConstantWarmupScheduler"
    module.ConstantWarmupScheduler = ConstantWarmupScheduler
    sys.modules[module.__name__] = module
    try:
        ckpt = {"state_dict": {"ctx": torch.ones(1, 4)}, "scheduler": ConstantWarmupScheduler()}
        torch.save(ckpt, tmp_path / "c.pth")
    finally:
        del sys.modules[module.__name__]
    loaded, reader = read_torch_checkpoint(tmp_path / "c.pth")
    reader.close()
    assert module.__name__ not in sys.modules
    stub = loaded["scheduler"]
    assert isinstance(stub, Stub) and stub.stub_of == f"{module.__name__}.ConstantWarmupScheduler"
    assert stub.__dict__["_stub"]["state"] == {"successor": None, "cons_lr": 1e-5}


class _Reduces:
    def __init__(self, func, args, state=None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


class _FakeStorage:
    numel = 4


class _CraftingPickler(pickle.Pickler):
    """Writes what `torch.save` would, by hand: storages as persistent ids, tensors as `_rebuild_tensor_v2`."""

    def persistent_id(self, obj):
        return ("storage", torch.FloatStorage, "0", "cpu", obj.numel) if isinstance(obj, _FakeStorage) else None


def _unpickle_crafted(obj) -> tuple:
    import io

    from metaprompt_hf.checkpoints import RestrictedUnpickler
    from metaprompt_hf.checkpoints.safe_unpickle import _StorageRef

    buf = io.BytesIO()
    _CraftingPickler(buf, protocol=2).dump(obj)
    unpickler = RestrictedUnpickler(io.BytesIO(buf.getvalue()), lambda key, dtype, n: _StorageRef(key, dtype, n))
    return unpickler.load(), unpickler.stubbed


def test_crafted_pickles_reach_no_callable_outside_the_allow_list(tmp_path):
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').write('x')"
    payload = [
        _Reduces(eval, (code,)),
        _Reduces(exec, (code,)),
        _Reduces(__import__, ("antigravity",)),
        _Reduces(getattr, (Path, "touch")),
    ]
    loaded, stubbed = _unpickle_crafted(payload)
    assert not marker.exists() and "antigravity" not in sys.modules
    assert all(isinstance(x, Stub) for x in loaded)
    assert {"builtins.eval", "builtins.exec", "builtins.__import__", "builtins.getattr"} <= stubbed
    # protocol 2 reaches a method through getattr(Path, "touch"): the stub of getattr is not callable
    with pytest.raises(TypeError, match="'getattr' object is not callable"):
        _unpickle_crafted(_Reduces(Path.touch, (marker,)))
    assert not marker.exists()

    # a tensor view past the end of its storage is refused before anything is read
    rebuild = torch._utils._rebuild_tensor_v2
    with pytest.raises(pickle.UnpicklingError, match="reads past its storage of 4 elements"):
        _unpickle_crafted(_Reduces(rebuild, (_FakeStorage(), 2, (3,), (1,), False, OrderedDict())))
    ok, _ = _unpickle_crafted(_Reduces(rebuild, (_FakeStorage(), 1, (3,), (1,), False, OrderedDict())))
    assert isinstance(ok, TensorRef) and ok.shape == (3,) and ok.offset == 1
    # a pickle may not rewrite a tensor record after it was checked (BUILD on it)
    with pytest.raises(pickle.UnpicklingError, match="set the state of a TensorRef"):
        _unpickle_crafted(_Reduces(rebuild, (_FakeStorage(), 0, (1,), (1,), False, OrderedDict()), {"shape": (99,)}))


def test_views_dtypes_and_shared_storage_are_rebuilt(tmp_path):
    base = torch.arange(24, dtype=torch.float32).view(4, 6)
    state = {
        "view": base[1:, ::2],  # offset and strides into a shared storage
        "same": base,
        "half": torch.randn(3, 5).half(),
        "bf16": torch.randn(2, 2).bfloat16(),
        "long": torch.arange(5),
        "flag": torch.tensor([True, False]),
        "empty": torch.empty(0, 3),
    }
    torch.save({"state_dict": state}, tmp_path / "v.pth")
    loaded, reader = read_torch_checkpoint(tmp_path / "v.pth")
    try:
        for key, value in state.items():
            got = loaded["state_dict"][key].materialize()
            assert got.dtype == value.dtype and torch.equal(got, value), key
    finally:
        reader.close()


def test_unreadable_files_are_refused_naming_the_file(tmp_path):
    legacy = tmp_path / "legacy.pth"
    torch.save({"state_dict": {"ctx": torch.ones(2)}}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy.pth: not a torch.save zip archive.*legacy"):
        read_torch_checkpoint(legacy)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        read_torch_checkpoint(junk)


# ---------------------------------------------------------------------------------------------------- MetaPrompt end to end
@pytest.fixture(scope="module")
def fidelity_clip_dir(tmp_path_factory) -> str:
    """The tiny CLIP of the fidelity recording with the package's CLIP BPE tokenizer (as tests/test_fidelity.py)."""
    folder = tmp_path_factory.mktemp("fidelity_clip")
    for f in (FIXTURES / "tiny_clip").iterdir():
        shutil.copy(f, folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        shutil.copy(PACKAGE_TOKENIZER / name, folder)
    return str(folder)


@pytest.fixture(scope="module")
def ref() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / "official_reference.safetensors"))


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((FIXTURES / "official_reference.json").read_text())


def official_metaprompt_state(ref, setting: str, g: torch.Generator) -> dict[str, torch.Tensor]:
    """The official CustomCLIP's state dict (trainers/meta.py): the two prompt learners' `ctx` with the recorded
    official values, the vision prompt learner's references to the frozen CLIP, and the frozen CLIP."""
    return {
        "prompt_learner.ctx": ref[f"{setting}.init.text_prompts"].clone(),
        "vision_prompt_learner.ctx": ref[f"{setting}.init.vision_prompts"].clone(),
        "vision_prompt_learner.conv1.weight": torch.randn(8, 3, 2, 2, generator=g),
        "vision_prompt_learner.class_embedding": torch.randn(8, generator=g),
        "vision_prompt_learner.visual.proj": torch.randn(8, 4, generator=g),
        **frozen_clip_keys(g),
    }


@pytest.mark.parametrize("setting", ["b2n", "dg"])
def test_official_metaprompt_checkpoint_converts_to_the_official_eval_logits(
    tmp_path, fidelity_clip_dir, ref, meta, setting, capsys
):
    marker = tmp_path / "pwned"
    state = official_metaprompt_state(ref, setting, torch.Generator().manual_seed(0))
    ckpt = save_dassl(tmp_path / "model.pth.tar-5", state, marker=str(marker))
    out = tmp_path / "adapter"
    template = "|".join(meta[setting]["frozen_branch_templates"])
    argv = ["--method", "metaprompt", "--checkpoint", ckpt, "--base_model", fidelity_clip_dir]
    assert main([*argv, "--output_dir", str(out), "--template", template]) == 0
    assert not marker.exists()
    report = capsys.readouterr().out
    assert "took text_prompts (3, " in report and "from prompt_learner.ctx" in report
    assert "dropped 8 keys, the frozen base model" in report
    assert "posix.system" in report or "os.system" in report

    model = MetaPromptModel.from_pretrained(str(out)).eval()
    config = model.adapters["default"].config
    assert config.method_config["name"] == "metaprompt" and config.coupled_branches
    assert config.base_model_name_or_path == fidelity_clip_dir
    with torch.no_grad():
        logits = model(ref[f"{setting}.images"], meta["classnames"]).logits
    official = ref[f"{setting}.fwd.z_o_eval"]
    diff = (logits - official).abs().max().item()
    sys.__stdout__.write(f"\n{setting}: max |converted - official| eval logits = {diff:.3g}\n")
    assert diff <= 1e-4, f"converted adapter's eval logits differ from the official ones by {diff:.3g}"
    torch.testing.assert_close(model.text_prompts, ref[f"{setting}.init.text_prompts"], rtol=0, atol=0)

    # A non-empty output folder is refused before anything is read; --overwrite writes into it.
    assert main([*argv, "--output_dir", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main([*argv, "--output_dir", str(out), "--template", template, "--overwrite"]) == 0


def test_fp16_checkpoint_is_converted_to_fp32(tmp_path, fidelity_clip_dir, ref):
    state = official_metaprompt_state(ref, "b2n", torch.Generator().manual_seed(0))
    state = {k: v.half() for k, v in state.items()}  # the official default PREC=fp16
    ckpt = save_dassl(tmp_path / "model.pth.tar-2", state)
    assert main(["--method", "metaprompt_no_meta", "--checkpoint", ckpt, "--base_model", fidelity_clip_dir,
                 "--output_dir", str(tmp_path / "a")]) == 0  # fmt: skip
    tensors = load_file(str(tmp_path / "a" / "metaprompt_model.safetensors"))
    assert tensors["text_prompts"].dtype == torch.float32
    assert torch.equal(tensors["text_prompts"], ref["b2n.init.text_prompts"].half().float())


# ---------------------------------------------------------------------------------------------------- CoOp / IVLP
def ivlp_state(g: torch.Generator, text_depth: int = 3, vision_depth: int = 2, n_ctx: int = 2, n_pro: int = 3):
    state = {"prompt_learner.ctx": torch.randn(n_ctx, 32, generator=g), "image_encoder.VPT": torch.randn(n_pro, 48)}
    for i in range(1, text_depth):
        state[f"text_encoder.transformer.resblocks.{i}.VPT_shallow"] = torch.randn(n_ctx, 32, generator=g)
    for i in range(1, vision_depth):
        state[f"image_encoder.transformer.resblocks.{i}.VPT_shallow"] = torch.randn(n_pro, 48, generator=g)
    state["prompt_learner.token_prefix"] = torch.randn(5, 1, 32, generator=g)
    state["prompt_learner.token_suffix"] = torch.randn(5, 70, 32, generator=g)
    return state | frozen_clip_keys(g)


def test_ivlp_checkpoint_puts_each_layer_in_its_row(tmp_path, tiny_clip_dir, capsys):
    state = ivlp_state(torch.Generator().manual_seed(1), text_depth=2)
    ckpt = save_dassl(tmp_path / "model.pth.tar-5", state)
    out = tmp_path / "ivlp"
    assert main(["--method", "ivlp", "--checkpoint", ckpt, "--base_model", tiny_clip_dir,
                 "--output_dir", str(out), "--dataset_name", "eurosat"]) == 0  # fmt: skip
    report = capsys.readouterr().out
    assert "dropped 2 keys, fixed token buffers" in report
    model = MetaPromptModel.from_pretrained(str(out))
    config = model.adapters["default"].config
    assert (config.text_depth, config.n_ctx, config.vision_depth, config.n_pro) == (2, 2, 2, 3)
    assert not config.coupled_branches and config.templates == ["a centered satellite photo of {}"]
    # layer-0 text context as stored; the VPT prompts rounded to fp16, as the official forward casts them
    assert torch.equal(model.text_prompts[0], state["prompt_learner.ctx"])
    assert not torch.equal(state["prompt_learner.ctx"], state["prompt_learner.ctx"].half().float())
    fp16 = lambda key: state[key].half().float()  # noqa: E731
    assert torch.equal(model.text_prompts[1], fp16("text_encoder.transformer.resblocks.1.VPT_shallow"))
    assert torch.equal(model.vision_prompts[0], fp16("image_encoder.VPT"))
    assert torch.equal(model.vision_prompts[1], fp16("image_encoder.transformer.resblocks.1.VPT_shallow"))
    assert "rounded to fp16 as the official forward does: 3 keys" in report


OFFICIAL_CHECKPOINTS = Path(__file__).resolve().parents[1] / "fixtures" / "official_checkpoints"


def official_checkpoint(tmp_path: Path, method: str) -> tuple[str, dict, dict[str, torch.Tensor]]:
    """An official model's checkpoint rebuilt from tests/fixtures/official_checkpoints (recorded by its record.py):
    the prompt values as recorded, every other key of the official state dict under its recorded name and shape
    (token buffers, the frozen CLIP: their values are dropped, so zeros stand in), saved as Dassl does."""
    record = json.loads((OFFICIAL_CHECKPOINTS / f"official_{method}.json").read_text())
    ref = load_file(str(OFFICIAL_CHECKPOINTS / f"official_{method}.safetensors"))
    state = OrderedDict()
    for key, shape, _dtype in record["state_dict_keys"]:
        state[key] = ref[f"state.{key}"] if f"state.{key}" in ref else torch.zeros(()).expand(shape)
    return save_dassl(tmp_path / "model.pth.tar-5", state), record, ref


def assert_official_logits(model: MetaPromptModel, record: dict, ref: dict, method: str) -> None:
    with torch.no_grad():
        logits = model.eval()(ref["images"], record["classnames"]).logits
    diff = (logits - ref["logits"]).abs().max().item()
    sys.__stdout__.write(f"\n{method}: max |converted - official| eval logits = {diff:.3g}\n")
    assert diff <= 1e-4, f"converted adapter's eval logits differ from the official {method} ones by {diff:.3g}"


def test_recorded_official_metaprompt_state_dict_converts_to_its_eval_logits(tmp_path, fidelity_clip_dir, capsys):
    """The whole official CustomCLIP's state dict (217 keys, trainers/meta.py), as recorded from the official code:
    every key not a prompt is accounted for as the frozen CLIP, and the eval logits (z°) are the official ones."""
    ckpt, record, ref = official_checkpoint(tmp_path, "metaprompt")
    out = tmp_path / "mp"
    argv = [
        "--method",
        "metaprompt",
        "--checkpoint",
        ckpt,
        "--base_model",
        fidelity_clip_dir,
        "--output_dir",
        str(out),
    ]
    assert main([*argv, "--template", "a photo of a {}"]) == 0  # the Caltech101 template of the recording
    assert "dropped 215 keys, the frozen base model" in capsys.readouterr().out
    assert_official_logits(MetaPromptModel.from_pretrained(str(out)), record, ref, "metaprompt (recorded state dict)")


def test_python_dash_m_convert_writes_an_adapter(tmp_path, tiny_clip_dir):
    """The command as a user runs it (a subprocess): exit 0 and an adapter folder (refusals: exit 2, tested above)."""
    import subprocess

    ckpt = save_dassl(
        tmp_path / "model.pth.tar-50", {"ctx": torch.randn(4, 32), "token_prefix": torch.randn(3, 1, 32)}
    )
    cmd = [sys.executable, "-m", "metaprompt_hf.convert", "--method", "coop", "--checkpoint", ckpt]
    cmd += ["--base_model", tiny_clip_dir]
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*cmd, "--output_dir", str(tmp_path / "a")], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "took text_prompts (1, 4, 32) from ctx" in done.stdout
    assert sorted(os.listdir(tmp_path / "a")) == [
        "README.md",
        "metaprompt_config.json",
        "metaprompt_model.safetensors",
    ]


def test_official_ivlp_checkpoint_converts_to_the_official_eval_logits(tmp_path, fidelity_clip_dir, capsys):
    ckpt, record, ref = official_checkpoint(tmp_path, "ivlp")
    out = tmp_path / "ivlp"
    argv = ["--method", "ivlp", "--checkpoint", ckpt, "--base_model", fidelity_clip_dir, "--output_dir", str(out)]
    assert main(argv) == 0
    report = capsys.readouterr().out
    assert "dropped 85 keys, the frozen base model" in report and "dropped 2 keys, fixed token buffers" in report
    model = MetaPromptModel.from_pretrained(str(out))
    config = model.adapters["default"].config
    assert (config.text_depth, config.n_ctx, config.vision_depth, config.n_pro) == (2, 2, 3, 3)
    assert_official_logits(model, record, ref, "ivlp")


def test_official_promptsrc_checkpoint_gives_the_official_eval_logits(tmp_path, fidelity_clip_dir, capsys):
    """PromptSRC's eval forward is IVLP's (the same modified CLIP), so its prompts on an IVLP adapter give the
    official PromptSRC logits; the whole command runs once the `promptsrc` method is registered."""
    ckpt, record, ref = official_checkpoint(tmp_path, "promptsrc")
    checkpoint, reader = read_torch_checkpoint(ckpt)
    dims = {"text_hidden_size": 64, "vision_hidden_size": 128, "text_num_layers": 3, "vision_num_layers": 3}
    state = find_state_dict(checkpoint, ckpt)
    found = extract_prompts(state, OFFICIAL_LAYOUTS["promptsrc"], dims, method="promptsrc", base="b", source=ckpt)
    assert len(found.dropped["the frozen zero-shot image encoder (the teacher)"]) == 44
    with pytest.raises(CheckpointError, match="learned-looking tensors that ivlp does not use.*ZS_image_encoder"):
        extract_prompts(state, OFFICIAL_LAYOUTS["ivlp"], dims, method="ivlp", base="b", source=ckpt)
    reader.close()
    if "promptsrc" in METHODS:
        argv = ["--method", "promptsrc", "--checkpoint", ckpt, "--base_model", fidelity_clip_dir]
        assert main([*argv, "--output_dir", str(tmp_path / "src")]) == 0
        model = MetaPromptModel.from_pretrained(str(tmp_path / "src"))
    else:
        model = _adapter_of(tmp_path, "ivlp", fidelity_clip_dir, found.tensors)
    assert_official_logits(model, record, ref, "promptsrc")


def test_official_kgcoop_checkpoint_gives_the_official_eval_logits(tmp_path, fidelity_clip_dir):
    """KgCoOp saves its prompt learner only (ctx, the unused bias_vectors and meta_net, the token buffers); its
    eval logits are CoOp's, so its ctx on a CoOp adapter gives them; the whole command runs once `kgcoop` is
    registered."""
    ckpt, record, ref = official_checkpoint(tmp_path, "kgcoop")
    assert record["registered_model"] == "prompt_learner"
    checkpoint, reader = read_torch_checkpoint(ckpt)
    dims = {"text_hidden_size": 64, "vision_hidden_size": 128, "text_num_layers": 3, "vision_num_layers": 3}
    state = find_state_dict(checkpoint, ckpt)
    found = extract_prompts(state, OFFICIAL_LAYOUTS["kgcoop"], dims, method="kgcoop", base="b", source=ckpt)
    reader.close()
    dropped = sorted(k for keys in found.dropped.values() for k in keys)
    assert dropped == [
        "bias_vectors",
        "meta_net.linear1.bias",
        "meta_net.linear1.weight",
        "token_prefix",
        "token_suffix",
    ]
    if "kgcoop" in METHODS:
        argv = ["--method", "kgcoop", "--checkpoint", ckpt, "--base_model", fidelity_clip_dir]
        assert main([*argv, "--output_dir", str(tmp_path / "kg")]) == 0
        model = MetaPromptModel.from_pretrained(str(tmp_path / "kg"))
    else:
        model = _adapter_of(tmp_path, "coop", fidelity_clip_dir, found.tensors)
    assert_official_logits(model, record, ref, "kgcoop")


def _adapter_of(tmp_path: Path, method: str, clip_dir: str, tensors: dict[str, torch.Tensor]) -> MetaPromptModel:
    """The adapter of `method` holding `tensors`, saved and loaded back."""
    from metaprompt_hf.backbones import load_base_model as load_clip
    from metaprompt_hf.backbones import load_base_processor as load_processor

    text, vision = tensors["text_prompts"], tensors.get("vision_prompts")
    n_pro = vision.shape[1] if vision is not None else 0
    config = get_method(method).adapter_config(["a photo of a {}"], n_ctx=text.shape[1], n_pro=n_pro)
    depth = {"text_depth": text.shape[0]} | ({"vision_depth": vision.shape[0]} if vision is not None else {})
    model = MetaPromptModel(load_clip(clip_dir), dataclasses.replace(config, **depth), load_processor(clip_dir))
    model.load_prompt_state_dict(tensors)
    model.save_pretrained(tmp_path / f"as_{method}")
    return MetaPromptModel.from_pretrained(str(tmp_path / f"as_{method}"))


def test_coop_prompt_learner_checkpoint(tmp_path, tiny_clip_dir):
    g = torch.Generator().manual_seed(2)
    state = {
        "ctx": torch.randn(4, 32, generator=g),
        "token_prefix": torch.randn(3, 1, 32),
        "token_suffix": torch.randn(3, 72, 32),
    }
    ckpt = save_dassl(tmp_path / "model.pth.tar-50", state)
    assert main(["--method", "coop", "--checkpoint", ckpt, "--base_model", tiny_clip_dir,
                 "--output_dir", str(tmp_path / "coop")]) == 0  # fmt: skip
    model = MetaPromptModel.from_pretrained(str(tmp_path / "coop"))
    assert model.text_prompts.shape == (1, 4, 32) and model.vision_prompts is None
    assert torch.equal(model.text_prompts[0], state["ctx"])


# ---------------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("method", "state", "message"),
    [
        # width of another base model
        ("coop", {"ctx": torch.zeros(4, 512)}, r"'ctx' has shape \(4, 512\), but coop on base model .* \(4, 32\)"),
        # CoOp's class-specific context (CSC) has no counterpart
        ("coop", {"ctx": torch.zeros(10, 4, 32)}, r"'ctx' has shape \(10, 4, 32\)"),
        # a MetaPrompt checkpoint (stacked) read as IVLP
        ("ivlp", {"prompt_learner.ctx": torch.zeros(3, 2, 32), "image_encoder.VPT": torch.zeros(2, 48)},
         r"'prompt_learner.ctx' has shape \(3, 2, 32\), but ivlp .* expects \(tokens, 32\)"),
        # an IVLP checkpoint read as MetaPrompt
        ("metaprompt", {"prompt_learner.ctx": torch.zeros(2, 32), "vision_prompt_learner.ctx": torch.zeros(2, 2, 48)},
         r"'prompt_learner.ctx' has shape \(2, 32\), but metaprompt .* expects \(depth <= 3, tokens, 32\)"),
        # too deep for the base model
        ("metaprompt", {"prompt_learner.ctx": torch.zeros(12, 2, 32), "vision_prompt_learner.ctx": torch.zeros(2, 2, 48)},
         r"\(12, 2, 32\)"),
        # deeper layers with another token count
        ("ivlp", ivlp_state(torch.Generator(), n_ctx=2) | {"text_encoder.transformer.resblocks.2.VPT_shallow": torch.zeros(4, 32)},
         r"resblocks.2.VPT_shallow' has shape \(4, 32\).*expects \(2, 32\)"),
        # a MaPLe checkpoint: learned tensors IVLP does not take
        ("ivlp", ivlp_state(torch.Generator()) | {"prompt_learner.compound_prompts_text.0": torch.zeros(2, 32)},
         r"learned-looking tensors that ivlp does not use: \['prompt_learner.compound_prompts_text.0 \(2, 32\)'\]"),
        # a CoOp checkpoint read as IVLP
        ("ivlp", {"ctx": torch.zeros(2, 32)}, r"no text prompts: ivlp checkpoints hold them under 'prompt_learner.ctx'"),
    ],
)  # fmt: skip
def test_checkpoints_that_do_not_fit_are_refused_naming_key_and_shapes(
    tmp_path, tiny_clip_dir, capsys, method, state, message
):
    ckpt = save_dassl(tmp_path / "model.pth.tar-1", state)
    out = tmp_path / "out"
    assert (
        main(["--method", method, "--checkpoint", ckpt, "--base_model", tiny_clip_dir, "--output_dir", str(out)]) == 2
    )
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------- the table
def _refs(tmp_path, state: dict) -> dict[str, TensorRef]:
    torch.save({"state_dict": state}, tmp_path / "s.pth")
    ckpt, reader = read_torch_checkpoint(tmp_path / "s.pth")
    return find_state_dict(ckpt, "s.pth")


def test_kgcoop_layout_takes_ctx_and_drops_its_unused_tensors(tmp_path):
    """KgCoOp's prompt learner (KgCoOp/trainers/kgcoop.py): ctx, plus bias_vectors and meta_net that its forward
    never reads, and the token buffers."""
    g = torch.Generator().manual_seed(3)
    state = {
        "ctx": torch.randn(4, 32, generator=g),
        "bias_vectors": torch.randn(1, 512),
        "meta_net.linear1.weight": torch.randn(512, 512),
        "meta_net.linear1.bias": torch.randn(512),
        "token_prefix": torch.randn(3, 1, 32),
        "token_suffix": torch.randn(3, 72, 32),
    }
    found = extract_prompts(
        _refs(tmp_path, state), OFFICIAL_LAYOUTS["kgcoop"], TINY, method="kgcoop", base="b", source="s"
    )
    assert torch.equal(found.tensors["text_prompts"], state["ctx"][None]) and "vision_prompts" not in found.tensors
    assert sorted(k for keys in found.dropped.values() for k in keys) == sorted(set(state) - {"ctx"})
    assert not found.dropped.get("the frozen base model")


def test_promptsrc_layout_takes_the_ivlp_prompts_and_drops_the_teacher(tmp_path):
    """PromptSRC saves the whole CustomCLIP (trainers/promptsrc.py): IVLP-style prompts, the frozen zero-shot image
    encoder under prompt_learner.ZS_image_encoder, the token buffers and the frozen CLIP."""
    g = torch.Generator().manual_seed(4)
    state = ivlp_state(g, text_depth=3, vision_depth=2) | {
        "prompt_learner.ZS_image_encoder.conv1.weight": torch.randn(8, 3, 2, 2),
        "prompt_learner.ZS_image_encoder.transformer.resblocks.0.ln_1.weight": torch.randn(8),
    }
    found = extract_prompts(
        _refs(tmp_path, state), OFFICIAL_LAYOUTS["promptsrc"], TINY, method="promptsrc", base="b", source="s"
    )
    assert found.tensors["text_prompts"].shape == (3, 2, 32) and found.tensors["vision_prompts"].shape == (2, 3, 48)
    deep = state["text_encoder.transformer.resblocks.2.VPT_shallow"]
    assert torch.equal(found.tensors["text_prompts"][2], deep.half().float())
    assert torch.equal(found.tensors["text_prompts"][0], state["prompt_learner.ctx"])
    assert len(found.dropped["the frozen zero-shot image encoder (the teacher)"]) == 2
    if "promptsrc" not in METHODS:  # the method is added separately; until then the command says so
        ckpt = save_dassl(tmp_path / "p.pth", state)
        with pytest.raises(
            CheckpointError, match="'promptsrc' has an official checkpoint layout but is not registered"
        ):
            from metaprompt_hf.convert import ConvertArguments, convert_checkpoint

            convert_checkpoint(ConvertArguments("promptsrc", ckpt, "unused", str(tmp_path / "o")))


@pytest.mark.parametrize("name", sorted(set(OFFICIAL_LAYOUTS) & set(METHODS)))
def test_every_layout_agrees_with_its_registered_method(name):
    layout, method = OFFICIAL_LAYOUTS[name], get_method(name)
    assert (layout.text is not None) == method.text_prompts and (layout.vision is not None) == method.vision_prompts
    if method.text_depth == 1:
        assert layout.text.stacked is None and layout.text.deeper is None
    assert layout.source.startswith("https://github.com/") and "/blob/" in layout.source and layout.verified


def test_a_base_model_that_is_not_clip_is_refused(tmp_path, siglip_and_processor):
    from metaprompt_hf.convert import ConvertArguments, convert_checkpoint

    siglip, processor = siglip_and_processor
    ckpt = save_dassl(tmp_path / "model.pth.tar-1", {"ctx": torch.zeros(2, 32)})
    args = ConvertArguments("coop", ckpt, "tiny-siglip", str(tmp_path / "out"))
    with pytest.raises(
        CheckpointError, match="tiny-siglip is a siglip model; official coop checkpoints are trained on"
    ):
        convert_checkpoint(args, clip=siglip, processor=processor)
    assert not (tmp_path / "out").exists()
