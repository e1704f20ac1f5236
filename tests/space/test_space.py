"""The Gradio Space (`spaces/app.py`): its pure functions, and the app served on 127.0.0.1 driven by gradio_client.

A tiny random-weight model is injected, so nothing is downloaded and the numbers mean nothing; the tests check the
plumbing: probabilities, labels, error messages, concurrency, and that the app keeps serving after bad input.
"""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import sys
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import gradio as gr
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from metaprompt_hf import MetaPromptConfig, MetaPromptModel

ROOT = Path(__file__).resolve().parents[2]
APP_PATH = ROOT / "spaces" / "app.py"
EXAMPLE = ROOT / "spaces" / "examples" / "photo_house.png"


def load_app() -> ModuleType:
    """Import `spaces/app.py` (not a package) once per process."""
    name = "metaprompt_space_app"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, APP_PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


app = load_app()

# gradio's queue calls pandas APIs that pandas 3 deprecates: not ours to fix, and noise in every test's report.
# The 48 MP test image also trips Pillow's own (expected) DecompressionBombWarning before the app refuses it.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]


@pytest.fixture(scope="module")
def tiny_model() -> MetaPromptModel:
    return app.load_model("tiny")


@pytest.fixture(scope="module")
def client(tiny_model) -> Iterator[Client]:
    demo = app.build_demo(tiny_model, model_name="tiny")
    try:
        _, url, _ = demo.launch(
            prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), **app.LAUNCH_KWARGS
        )
        yield Client(url, verbose=False)
    finally:
        demo.close()


# ------------------------------------------------------------------ bad-input files
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("space-inputs")
    out = {}
    out["text"] = d / "notes.png"  # an image extension on a text file: the content decides, not the name
    out["text"].write_text("this is not an image\n")
    data = EXAMPLE.read_bytes()
    out["truncated"] = d / "truncated.png"
    out["truncated"].write_bytes(data[: len(data) // 2])
    out["rgba"] = d / "rgba.png"
    Image.new("RGBA", (40, 30), (255, 0, 0, 0)).save(out["rgba"])
    # Decompression bombs: a valid header announcing many pixels costs nothing to write; Pillow reads the size
    # from the header alone, which is all the app needs to refuse it.
    out["big"] = d / "big.png"  # 8000 x 6000 = 48 MP: over the app's limit, under twice Pillow's (same) limit
    out["big"].write_bytes(png_header_only(8000, 6000))
    out["huge"] = d / "huge.png"  # 20000 x 20000 = 400 MP: Pillow itself refuses it while gradio opens the upload
    out["huge"].write_bytes(png_header_only(20000, 20000))
    return out


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR announces width x height (1-bit grey) followed by an empty, truncated image stream."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------ pure functions
@pytest.mark.parametrize(
    "text, expected",
    [
        ("cat, dog", ["cat", "dog"]),
        ("  cat ,dog,  ", ["cat", "dog"]),
        ("golden   retriever, tabby cat\nsiamese cat", ["golden retriever", "tabby cat", "siamese cat"]),
        ("Cat, DOG, bird", ["Cat", "DOG", "bird"]),
    ],
)
def test_parse_class_names(text, expected):
    assert app.parse_class_names(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "at least two class names"),
        ("", "at least two class names"),
        (" , ,", "at least two class names"),
        ("cat", "Got only 'cat'"),
        ("cat, dog, Cat ", "Duplicate class name: 'cat' and 'Cat'"),
        ("golden_retriever, golden  Retriever", "Duplicate class name"),
        (", ".join(f"class {i}" for i in range(101)), "Too many class names: 101; the maximum is 100"),
        ("cat, " + "x" * 81, "the maximum is 80"),
    ],
)
def test_parse_class_names_errors(text, message):
    with pytest.raises(gr.Error, match=message):
        app.parse_class_names(text)


def test_parse_template():
    assert app.parse_template(None) is None
    assert app.parse_template("   ") is None
    assert app.parse_template(" a sketch  of a {} ") == "a sketch of a {}"
    for bad in ("a sketch", "a {} and a {}", "a {0} photo", "a {name}", "a { photo of {}"):
        with pytest.raises(gr.Error, match="exactly once"):
            app.parse_template(bad)
    with pytest.raises(gr.Error, match="maximum is 200"):
        app.parse_template("a {}" + "x" * 200)


def test_load_image(files):
    assert app.load_image(str(EXAMPLE)).mode == "RGB"
    rgba = app.load_image(files["rgba"])
    assert rgba.mode == "RGB" and rgba.getpixel((0, 0)) == (255, 255, 255)  # transparent → white, not black
    assert app.load_image(Image.new("L", (5, 5))).mode == "RGB"
    for key, message in [
        ("text", "not an image"),
        ("truncated", "damaged or truncated"),
        ("big", r"too large \(8000 x 6000 = 48.0 megapixels\); the limit is 40 megapixels"),
        ("huge", "too large"),
    ]:
        with pytest.raises(gr.Error, match=message):
            app.load_image(files[key])
    with pytest.raises(gr.Error, match="upload an image"):
        app.load_image(None)


# (case, class text, template, expected): expected is the class list of a correct result, or ("error", pattern).
# Every error must be plain text: user text HTML-escaped (gr.Error renders HTML) and echoes cut short.
HOSTILE = "<img src=x onerror=alert(1)><a href=https://evil.example>Session expired: log in</a>"
ECHO_CASES: list[tuple[str, object, object, list[str] | tuple[str, str]]] = [
    ("HTML in a result label is fine", "<b>cat</b>, dog", "", ["<b>cat</b>", "dog"]),
    ("ampersands and quotes", "salt & pepper, \"quoted\" dog", "", ["salt & pepper", '"quoted" dog']),
    ("HTML as the only class", HOSTILE, "", ("error", r"Got only '&lt;img src=x onerror=alert\(1\)&gt;&lt;a href")),
    ("HTML duplicates", "<b>cat</b>, <B>CAT</B>", "", ("error", r"Duplicate class name: '&lt;b&gt;cat&lt;/b&gt;' and '&lt;B&gt;CAT&lt;/B&gt;'")),
    ("HTML in a long name", "cat, " + HOSTILE, "", ("error", r"Class name '&lt;img src=x onerror=alert\(1\)&gt;&lt;…' is 84 characters")),
    ("1 MB single class", "x" * 1_000_000, "", ("error", r"Got only 'x{59}…'\.$")),
    ("1 MB of classes", "cat, " + "y" * 1_000_000, "", ("error", r"Class name 'y{29}…' is 1000000 characters long")),
    ("HTML template", "cat, dog", "<script>alert(1)</script>", ("error", r"The template '&lt;script&gt;alert\(1\)&lt;/script&gt;' must")),
    ("long HTML template", "cat, dog", "<i>" * 60, ("error", r"The template '(&lt;i&gt;){19}&lt;i…' must contain")),
    ("class text not text", ["cat", "dog"], "", ("error", r"The class names must be text, got list")),
    ("template not text", "cat, dog", 3, ("error", r"The template must be text, got int")),
]  # fmt: skip


@pytest.mark.parametrize("class_text, template, expected", [r[1:] for r in ECHO_CASES], ids=[r[0] for r in ECHO_CASES])
def test_user_text_is_escaped_and_cut_in_errors(tiny_model, class_text, template, expected):
    if isinstance(expected, list):
        probs, _ = app.classify(str(EXAMPLE), class_text, template, model=tiny_model)
        assert list(probs) == expected
        return
    with pytest.raises(gr.Error) as info:
        app.classify(str(EXAMPLE), class_text, template, model=tiny_model)
    message = info.value.message
    assert re.search(expected[1], message), message
    assert "<" not in message and ">" not in message and len(message) < 300, message


def test_classify(tiny_model):
    probs, zero_shot = app.classify(str(EXAMPLE), "house, tree, fish", model=tiny_model)
    for p in (probs, zero_shot):
        assert list(p) == ["house", "tree", "fish"]
        assert sum(p.values()) == pytest.approx(1.0, abs=1e-5)
    # The same numbers as the model's own predict: the app adds nothing but parsing.
    expected, expected_zs = tiny_model.predict(Image.open(EXAMPLE), ["house", "tree", "fish"], return_zero_shot=True)
    assert list(probs.values()) == pytest.approx(expected[0].tolist(), abs=1e-6)
    assert list(zero_shot.values()) == pytest.approx(expected_zs[0].tolist(), abs=1e-6)


def test_custom_template_matches_a_model_built_with_it(tiny_model):
    """A custom template is the frozen branch's template: it changes z° and zero-shot as a config would."""
    names = ["house", "tree", "fish"]
    probs, zero_shot = app.classify(str(EXAMPLE), ", ".join(names), "a sketch of a {}", model=tiny_model)
    reference = MetaPromptModel(
        tiny_model.clip, MetaPromptConfig(templates=["a sketch of a {}"]), tiny_model.processor
    ).eval()
    with torch.no_grad():
        reference.text_prompts.copy_(tiny_model.text_prompts)
        reference.vision_prompts.copy_(tiny_model.vision_prompts)
    expected, expected_zs = reference.predict(Image.open(EXAMPLE), names, return_zero_shot=True)
    assert list(probs.values()) == pytest.approx(expected[0].tolist(), abs=1e-6)
    assert list(zero_shot.values()) == pytest.approx(expected_zs[0].tolist(), abs=1e-6)
    default_probs, _ = app.classify(str(EXAMPLE), ", ".join(names), model=tiny_model)
    assert list(default_probs.values()) != pytest.approx(list(probs.values()), abs=1e-6)


def test_text_features_are_cached_per_class_list_and_template(tiny_model, monkeypatch):
    calls = []
    encode = MetaPromptModel._encode_ids_chunked

    def counting(self, rows, prompts):
        calls.append(len(rows))
        return encode(self, rows, prompts)

    monkeypatch.setattr(MetaPromptModel, "_encode_ids_chunked", counting)
    names = "circle, square, hexagon"
    for template in ("", "a drawing of a {}", ""):
        app.classify(str(EXAMPLE), names, template, model=tiny_model)
    # Prompted features once (shared by every template), frozen features once per template, never again.
    assert len(calls) == 3
    for template in ("", "a drawing of a {}"):
        app.classify(str(EXAMPLE), names, template, model=tiny_model)
    assert len(calls) == 3


def test_load_model_specs(tmp_path, monkeypatch):
    from transformers import CLIPModel

    from metaprompt_hf.testing import tiny_clip

    with pytest.raises(ValueError, match="expected 'embedded', 'tiny'"):
        app.load_model("not a model spec")
    # A local adapter folder whose config names a local base CLIP folder.
    clip, processor = tiny_clip(seed=0)
    clip.save_pretrained(tmp_path / "clip")
    processor.save_pretrained(tmp_path / "clip")
    adapter = MetaPromptModel(CLIPModel.from_pretrained(tmp_path / "clip"), MetaPromptConfig(), processor)
    adapter.save_pretrained(tmp_path / "adapter")
    loaded = app.load_model(str(tmp_path / "adapter"))
    assert torch.equal(loaded.text_prompts, adapter.text_prompts) and not loaded.training
    # The environment variable is the default spec; importing the app loaded nothing.
    monkeypatch.setattr(app, "_default_model", None)
    monkeypatch.setenv(app.MODEL_ENV_VAR, "tiny")
    assert isinstance(app.get_model(), MetaPromptModel)


def test_embedded_missing_is_a_clear_error(monkeypatch):
    import metaprompt_hf

    monkeypatch.delattr(metaprompt_hf, "embedded", raising=False)
    monkeypatch.setitem(sys.modules, "metaprompt_hf.embedded", None)  # makes the import fail, as if absent
    with pytest.raises(RuntimeError, match="load_default_model is missing.*METAPROMPT_MODEL=tiny"):
        app.load_model("embedded")


# ------------------------------------------------------------------ the served app
def _probabilities(label: dict) -> dict[str, float]:
    return {c["label"]: c["confidence"] for c in label["confidences"]}


def test_api_prediction(client):
    metaprompt, zero_shot = client.predict(handle_file(EXAMPLE), "house, tree, fish", api_name="/classify")
    for label in (metaprompt, zero_shot):
        probs = _probabilities(label)
        assert set(probs) == {"house", "tree", "fish"}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert label["label"] == max(probs, key=probs.get)
    # The template is an optional third input.
    with_template = client.predict(handle_file(EXAMPLE), "house, tree, fish", "a sketch of a {}", api_name="/classify")
    assert set(_probabilities(with_template[0])) == {"house", "tree", "fish"}


def test_api_exposes_only_classify(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert list(endpoints) == ["/classify"]
    params = endpoints["/classify"]["parameters"]
    # Old two- and three-argument calls still work: the template and the adapter have defaults.
    assert [p["parameter_has_default"] for p in params] == [False, False, True, True]


@pytest.mark.parametrize(
    "image_key, class_text, template, message",
    [
        (None, "cat, dog", "", "Please upload an image"),
        ("example", "", "", "at least two class names"),
        ("example", "cat", "", "at least two class names"),
        ("example", "cat, dog, CAT", "", "Duplicate class name: 'cat' and 'CAT'"),
        ("example", ", ".join(f"c{i}" for i in range(101)), "", "the maximum is 100"),
        ("text", "cat, dog", "", "not an image"),
        ("truncated", "cat, dog", "", "damaged or truncated"),
        ("big", "cat, dog", "", "too large .*the limit is 40 megapixels"),
        ("huge", "cat, dog", "", "too large.*the limit is 40 megapixels"),
        ("example", "cat, dog", "a sketch", "exactly once"),
    ],
)
def test_api_bad_input(client, files, image_key, class_text, template, message):
    image = None if image_key is None else handle_file(EXAMPLE if image_key == "example" else files[image_key])
    with pytest.raises(AppError, match=message) as info:
        client.predict(image, class_text, template, api_name="/classify")
    assert "Traceback" not in str(info.value)


def _raw_call(client: Client, data: list) -> tuple[str, dict]:
    """POST /gradio_api/call/classify as any HTTP client can (no gradio_client file handling): (event, payload)."""
    import httpx

    base = client.src.rstrip("/")
    event_id = httpx.post(f"{base}/gradio_api/call/classify", json={"data": data}, timeout=30).json()["event_id"]
    text = httpx.get(f"{base}/gradio_api/call/classify/{event_id}", timeout=60).text
    event = re.search(r"^event: (\w+)", text, re.M).group(1)
    payload = json.loads(re.search(r"^data: (.*)$", text, re.M).group(1))
    return event, payload


FILE_DATA = {"meta": {"_type": "gradio.FileData"}}
# (case, image payload of a raw API call, expected): a server path is never read, and the client is told why.
RAW_IMAGE_CASES: list[tuple[str, object, str]] = [
    ("server file as FileData", {"path": "/etc/hostname", **FILE_DATA}, r"not uploaded by a user"),
    ("server file as a plain dict", {"path": "/etc/hostname"}, r"must be uploaded with the request"),
    ("traversal out of the upload folder", {"path": gr.utils.get_upload_folder() + "/../../etc/hostname"}, r"must be uploaded with the request"),
    ("missing file as FileData", {"path": "/nonexistent/x.png", **FILE_DATA}, r"not uploaded by a user"),
    ("a bare path string", "/etc/hostname", r"valid dictionary"),
    ("path of the wrong type", {"path": 42}, r"path\s+Input should be a valid string"),
    ("no image", None, r"Please upload an image"),
    ("a bundled example", {"path": str(EXAMPLE)}, "ok"),
]  # fmt: skip


@pytest.mark.parametrize("image, expected", [r[1:] for r in RAW_IMAGE_CASES], ids=[r[0] for r in RAW_IMAGE_CASES])
def test_raw_api_calls_get_a_message(client, image, expected):
    event, payload = _raw_call(client, [image, "cat, dog", "", ""])  # raw calls send every input ("" = default)
    if expected == "ok":
        assert event == "complete", payload
        assert {c["label"] for c in payload[0]["confidences"]} == {"cat", "dog"}
        return
    assert event == "error" and payload["error"], payload  # a message, not {"error": null}
    assert re.search(expected, payload["error"]), payload
    assert "Traceback" not in payload["error"]


def test_api_keeps_serving_after_errors(client, files):
    for bad in ("text", "huge"):
        with pytest.raises(AppError):
            client.predict(handle_file(files[bad]), "cat, dog", api_name="/classify")
    metaprompt, _ = client.predict(handle_file(EXAMPLE), "cat, dog", api_name="/classify")
    assert set(_probabilities(metaprompt)) == {"cat", "dog"}


def test_api_concurrent_requests(client):
    """20 requests at once, over several class lists and templates, all answered with their own classes."""
    class_lists = ["cat, dog", "house, tree, fish", "zero, one, two, three", "red, green"]
    templates = ["", "a sketch of a {}"]
    started = threading.Barrier(20)

    def request(i: int) -> tuple[int, dict]:
        started.wait()  # release all 20 together
        result = client.predict(handle_file(EXAMPLE), class_lists[i % 4], templates[i % 2], api_name="/classify")
        return i, result[0]

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(request, range(20)))
    assert len(results) == 20
    for i, label in results:
        probs = _probabilities(label)
        assert set(probs) == {c.strip() for c in class_lists[i % 4].split(",")}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)


def test_api_refuses_uploads_over_the_size_limit(client, tmp_path):
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(21 * 1024 * 1024)  # sparse: 21 MiB on paper, nothing written
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        client.predict(handle_file(big), "cat, dog", api_name="/classify")
    metaprompt, _ = client.predict(handle_file(EXAMPLE), "cat, dog", api_name="/classify")
    assert set(_probabilities(metaprompt)) == {"cat", "dog"}


# ------------------------------------------------------------------ several adapters on one base
NAMES = ["house", "tree", "fish", "car"]


@pytest.fixture(scope="module")
def two_adapter_model(tmp_path_factory) -> MetaPromptModel:
    """The tiny base with its own adapter (`default`) and a second one, `sketchy`, loaded from a folder through
    `METAPROMPT_ADAPTERS`-style specs: other prompts (another seed) and another template."""
    model = app.load_model("tiny")
    with torch.random.fork_rng():
        torch.manual_seed(1)
        other = MetaPromptModel(model.clip, MetaPromptConfig(templates=["a sketch of a {}"]), model.processor)
    folder = tmp_path_factory.mktemp("adapters") / "sketchy"
    other.save_pretrained(folder)
    return app.load_adapters(model, f"sketchy={folder}")


def _serial(model: MetaPromptModel, adapter: str, names: list[str]) -> tuple[list[float], list[float]]:
    probs, zero_shot = model.predict(Image.open(EXAMPLE), names, return_zero_shot=True, adapter_name=adapter)
    return probs[0].tolist(), zero_shot[0].tolist()


def test_parse_adapter_specs():
    assert app.parse_adapter_specs(None) == {}
    assert app.parse_adapter_specs(" a=org/x ,\nb-2 = runs/b=1,") == {"a": "org/x", "b-2": "runs/b=1"}
    for text, match in [
        ("a", "expected 'name=folder_or_hub_id', got 'a'"),
        ("=x", "expected 'name=folder_or_hub_id'"),
        ("a.b=x", "adapter name 'a.b' must be"),
        ("a=x,a=y", "'a' is given twice"),
    ]:
        with pytest.raises(ValueError, match=match):
            app.parse_adapter_specs(text)


def test_load_adapters_refuses_a_name_already_on_the_model(two_adapter_model, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="'default' is already on the model"):
        app.load_adapters(two_adapter_model, {"default": str(tmp_path)})
    # Default: the environment variable; none set means no change.
    monkeypatch.delenv(app.ADAPTERS_ENV_VAR, raising=False)
    assert app.load_adapters(two_adapter_model).adapter_names == ["default", "sketchy"]


def test_classify_with_each_adapter(two_adapter_model):
    model = two_adapter_model
    results = {}
    for adapter in ("default", "sketchy"):
        probs, zero_shot = app.classify(str(EXAMPLE), ", ".join(NAMES), "", adapter, model=model)
        expected, expected_zs = _serial(model, adapter, NAMES)
        assert list(probs.values()) == pytest.approx(expected, abs=1e-6)
        assert list(zero_shot.values()) == pytest.approx(expected_zs, abs=1e-6)
        results[adapter] = list(probs.values())
    assert results["default"] != pytest.approx(results["sketchy"], abs=1e-4)  # the adapters really differ
    # No adapter named: the model's active one; the active adapter is never switched by a request.
    probs, _ = app.classify(str(EXAMPLE), ", ".join(NAMES), model=model)
    assert list(probs.values()) == pytest.approx(results["default"], abs=1e-6)
    assert model.active_adapter == "default"


@pytest.mark.parametrize(
    "adapter, message",
    [
        ("nope", "Unknown adapter 'nope'; this Space serves: 'default', 'sketchy'."),
        ("<b>x</b>", "Unknown adapter '&lt;b&gt;x&lt;/b&gt;'"),
        (3, "The adapter name must be text, got int."),
    ],
)
def test_unknown_adapter_is_a_clear_escaped_error(two_adapter_model, adapter, message):
    with pytest.raises(gr.Error) as info:
        app.classify(str(EXAMPLE), "cat, dog", "", adapter, model=two_adapter_model)
    assert str(info.value.message).startswith(message), info.value.message


def test_main_refuses_a_bad_adapter_list_at_start_up(monkeypatch, capsys):
    monkeypatch.setenv(app.ADAPTERS_ENV_VAR, "sketchy")
    assert app.main(["--model", "tiny"]) == 2
    assert "expected 'name=folder_or_hub_id', got 'sketchy'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def multi_client(two_adapter_model) -> Iterator[Client]:
    demo = app.build_demo(two_adapter_model, model_name="tiny")
    try:
        _, url, _ = demo.launch(
            prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), **app.LAUNCH_KWARGS
        )
        yield Client(url, verbose=False)
    finally:
        demo.close()


def test_api_concurrent_requests_for_several_adapters(two_adapter_model, multi_client):
    """24 requests at once, alternating adapters (and the default, named by no one) and class lists: each answer is
    its adapter's serial one."""
    class_lists = [NAMES, NAMES[:2], NAMES[1:]]
    adapters = ["default", "sketchy", None]
    expected = {
        (a, i): _serial(two_adapter_model, a or "default", names)[0]
        for a in adapters
        for i, names in enumerate(class_lists)
    }
    started = threading.Barrier(24)

    def request(k: int) -> tuple[tuple, dict]:
        adapter, i = adapters[k % 3], (k // 3) % 3  # every (adapter, class list) pair, several times over
        args = [handle_file(EXAMPLE), ", ".join(class_lists[i])] + ([] if adapter is None else ["", adapter])
        started.wait()
        return (adapter, i), multi_client.predict(*args, api_name="/classify")[0]

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(request, range(24)))
    assert {key[0] for key, _ in results} == set(adapters)
    for (adapter, i), label in results:
        probs = _probabilities(label)
        assert set(probs) == set(class_lists[i])
        assert [probs[n] for n in class_lists[i]] == pytest.approx(expected[adapter, i], abs=1e-4)
    with pytest.raises(AppError, match="Unknown adapter 'nope'"):
        multi_client.predict(handle_file(EXAMPLE), "cat, dog", "", "nope", api_name="/classify")


def test_multi_adapter_ui_offers_the_adapters(two_adapter_model):
    demo = app.build_demo(two_adapter_model)
    dropdown = next(b for b in demo.blocks.values() if isinstance(b, gr.Dropdown))
    assert [c[1] for c in dropdown.choices] == ["default", "sketchy"] and dropdown.value == "default"
    assert dropdown.visible and dropdown.interactive
    assert "`sketchy`" in app.describe_model(two_adapter_model)


def test_space_readme_front_matter_and_documented_limits():
    from huggingface_hub import SpaceCard

    readme = ROOT / "spaces" / "README.md"
    meta = SpaceCard.load(readme).data.to_dict()
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gr.__version__  # pinned to what the tests ran
    assert (ROOT / "spaces" / meta["app_file"]).is_file()
    assert meta["license"] == "mit" and len(meta["short_description"]) <= 60
    # The default model is the embedded one: no Hub model linked or preloaded (tests/space/test_space_build.py).
    assert "models" not in meta and "preload_from_hub" not in meta
    text = readme.read_text(encoding="utf-8")
    for value in (app.MAX_CLASSES, app.MAX_CLASS_NAME_CHARS, app.MAX_TEMPLATE_CHARS):
        assert f"**{value}**" in text
    assert f"**{app.MAX_IMAGE_PIXELS // 1_000_000} megapixels**" in text
    assert f"**{app.MAX_UPLOAD_SIZE.removesuffix('mb')} MB**" in text
    assert all((app.EXAMPLES_DIR / file).is_file() for file, *_ in app.EXAMPLES)


def test_predictor_cache_does_not_keep_models_alive():
    import gc
    import weakref

    model = app.load_model("tiny")
    app.classify(str(EXAMPLE), "cat, dog", "a drawing of a {}", model=model)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


@pytest.mark.slow
def test_python_spaces_app_serves_the_embedded_default_offline(tmp_path):
    """`python spaces/app.py` as a user runs it: no arguments, no network, host and port from the environment."""
    import os
    import subprocess
    import time

    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    env.pop("METAPROMPT_MODEL", None)
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(APP_PATH)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the app did not listen within 120 s:\n" + log.read_text()[-3000:])
        assert "serving model 'embedded'" in log.read_text()
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        metaprompt, zero_shot = client.predict(
            handle_file(ROOT / "spaces" / "examples" / "sketch_fish.png"), "house, fish, car", api_name="/classify"
        )
        for label in (metaprompt, zero_shot):
            probs = _probabilities(label)
            assert set(probs) == {"house", "fish", "car"} and sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert _probabilities(metaprompt) != _probabilities(zero_shot)  # the trained prompts change the answer
    finally:
        proc.terminate()
        proc.wait(timeout=30)
