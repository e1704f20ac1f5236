"""MetaPrompt demo Space: MetaPrompt's probabilities beside frozen zero-shot CLIP's, for any image and class names.

The model is chosen with `--model` or the `METAPROMPT_MODEL` environment variable (default `embedded`):

* `embedded`: the repository's offline default (`metaprompt_hf.embedded.load_default_model()`);
* `tiny`: a random-weight tiny CLIP with a fresh adapter (tests and development; its outputs mean nothing);
* a local folder holding `metaprompt_config.json` + `metaprompt_model.safetensors`;
* a Hub id such as `org/metaprompt-vitb16` (its base CLIP is loaded too; set `HF_HUB_OFFLINE=1` to use the cache
  alone).

    METAPROMPT_MODEL=tiny GRADIO_SERVER_PORT=7861 python spaces/app.py

More adapters trained on the same base CLIP can be served beside it, one base model in memory for all of them:
`--adapters` or `METAPROMPT_ADAPTERS` lists `name=folder_or_hub_id` pairs separated by commas (default: none, just the
model's own adapter, named `default`). The UI offers a choice of adapter; each request names its adapter, so requests
for different adapters may run at the same time without switching a shared "active" adapter.

    METAPROMPT_ADAPTERS="sketch=runs/sketch,art=org/metaprompt-art" python spaces/app.py

The `classify` API endpoint takes (image, class names) and returns the MetaPrompt probabilities (a `gr.Label`),
then the zero-shot ones; the frozen-branch template and the adapter name are optional third and fourth inputs:

    from gradio_client import Client, handle_file
    metaprompt, zero_shot = Client("http://127.0.0.1:7861").predict(
        handle_file("cat.png"), "cat, dog", api_name="/classify"
    )
    Client(...).predict(handle_file("cat.png"), "cat, dog", "", "sketch", api_name="/classify")

Input limits (see README.md): 2 to `MAX_CLASSES` distinct class names of at most `MAX_CLASS_NAME_CHARS`
characters; images of at most `MAX_IMAGE_PIXELS` pixels and `MAX_UPLOAD_SIZE`; templates of at most
`MAX_TEMPLATE_CHARS` characters with exactly one `{}`.
"""

from __future__ import annotations

import argparse
import html
import logging
import os
import re
import sys
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from PIL import Image

# The app's own folder: `space_inputs` beside it, also when the app is loaded by path (tests, the built Space).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from space_inputs import (  # noqa: E402, F401  (re-exported: the tests and the docs name them as app.*)
    ADAPTERS_ENV_VAR,
    DEFAULT_MODEL,
    MAX_ADAPTER_NAME_CHARS,
    MAX_CLASS_NAME_CHARS,
    MAX_CLASSES,
    MAX_ECHO_CHARS,
    MAX_IMAGE_PIXELS,
    MAX_TEMPLATE_CHARS,
    MAX_UPLOAD_SIZE,
    MODEL_ENV_VAR,
    MSG_CORRUPT_IMAGE,
    MSG_INTERNAL,
    MSG_NO_IMAGE,
    MSG_NOT_AN_IMAGE,
    MSG_NOT_UPLOADED,
    MSG_TEXT_TOO_LONG,
    MSG_TOO_FEW_CLASSES,
    MSG_UNKNOWN_ADAPTER,
    _cut,
    echo,
    load_image,
    parse_adapter_name,
    parse_adapter_specs,
    parse_class_names,
    parse_template,
)

from metaprompt_hf import MetaPromptConfig, MetaPromptModel
from metaprompt_hf.inputs.text_fit import TextTooLongError

# ------------------------------------------------------------------ limits (documented in README.md)
CONCURRENCY_LIMIT = 4  # requests decoded/validated at once; model calls themselves are serialised (see _Predictor)
QUEUE_SIZE = 256
NUM_TOP_CLASSES = 5


# show_error: errors raised by gradio itself before the event function runs (e.g. a raw API call naming a server file
# that was never uploaded) reach the client with their message instead of `{"error": null}`. Everything raised while
# the event runs is a `gr.Error` we wrote (see `build_demo.run`), so no internal message is shown.
LAUNCH_KWARGS: dict[str, Any] = {"max_file_size": MAX_UPLOAD_SIZE, "show_error": True}
"""Keyword arguments every launch of the demo should use (the tests use them too)."""

logger = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
STYLE_CLASSES = "house, tree, car, fish, flower, umbrella, boat, star, heart, sun"
DIGIT_CLASSES = "zero, one, two, three, four, five, six, seven, eight, nine"
GLYPH_CLASSES = "letter a, question mark, letter e, dollar sign, ampersand, percent sign, at sign, plus sign"
# (file, class names, template, caption): several domains and styles of the mini world the embedded model knows.
EXAMPLES: tuple[tuple[str, str, str, str], ...] = (
    ("photo_house.png", STYLE_CLASSES, "", "photo"),
    ("sketch_fish.png", STYLE_CLASSES, "a sketch of a {}", "sketch"),
    ("cartoon_umbrella.png", STYLE_CLASSES, "a cartoon of a {}", "cartoon"),
    ("painting_car.png", STYLE_CLASSES, "a painting of a {}", "painting"),
    ("handwritten_seven.png", DIGIT_CLASSES, "a photo of the digit {}", "handwritten digit"),
    ("glyph_question_mark.png", GLYPH_CLASSES, "a photo of the {}", "typed symbol"),
)


def load_model(spec: str | None = None) -> MetaPromptModel:
    """Resolve a model spec: `embedded`, `tiny`, a local adapter folder or a Hub id (default: $METAPROMPT_MODEL,
    else `embedded`). Returns the model in eval mode."""
    spec = (spec or os.environ.get(MODEL_ENV_VAR) or DEFAULT_MODEL).strip()
    if spec == "embedded":
        model = _load_embedded()
    elif spec == "tiny":
        from metaprompt_hf.testing import tiny_clip

        clip, processor = tiny_clip(seed=0)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = MetaPromptModel(clip, MetaPromptConfig(), processor)
    elif os.path.isdir(spec) or re.fullmatch(r"[\w.-]+/[\w.-]+", spec):
        model = MetaPromptModel.from_pretrained(spec)
    else:
        raise ValueError(
            f"{MODEL_ENV_VAR}={spec!r}: expected 'embedded', 'tiny', an existing adapter folder, or a Hub id "
            "such as 'org/metaprompt-vitb16'"
        )
    return model.eval()


def load_adapters(model: MetaPromptModel, specs: str | dict[str, str] | None = None) -> MetaPromptModel:
    """Load more adapters onto `model`'s base (`MetaPromptModel.load_adapter`), from `name=folder_or_hub_id` pairs
    (default: $METAPROMPT_ADAPTERS, else none). The model's active adapter stays the default of requests.

    Raises:
        ValueError: a malformed list, a name already on the model, or an adapter that does not fit the base model.
    """
    if specs is None:
        specs = os.environ.get(ADAPTERS_ENV_VAR)
    if not isinstance(specs, dict):
        specs = parse_adapter_specs(specs)
    for name, source in specs.items():
        if name in model.adapter_names:
            raise ValueError(f"{ADAPTERS_ENV_VAR}: adapter name {name!r} is already on the model; pick another")
        model.load_adapter(source, adapter_name=name)
    return model.eval()


def _load_embedded() -> MetaPromptModel:
    try:
        from metaprompt_hf import embedded
    except ModuleNotFoundError as err:
        if err.name != "metaprompt_hf.embedded":
            raise
        embedded = None
    loader = getattr(embedded, "load_default_model", None)
    if loader is None:
        raise RuntimeError(
            "the embedded default model is not available in this version of metaprompt_hf "
            f"(metaprompt_hf.embedded.load_default_model is missing); set {MODEL_ENV_VAR}=tiny for a random test "
            "model, or to an adapter folder or a Hub id"
        )
    model = loader()
    if not isinstance(model, MetaPromptModel):
        raise TypeError(f"load_default_model() returned {type(model).__name__}, expected a MetaPromptModel")
    return model


_default_model: MetaPromptModel | None = None
_default_model_lock = threading.Lock()


def get_model() -> MetaPromptModel:
    """The process-wide default model, loaded on first use (so importing this module loads nothing)."""
    global _default_model
    with _default_model_lock:
        if _default_model is None:
            _default_model = load_adapters(load_model())
        return _default_model


# ------------------------------------------------------------------ prediction
class _Predictor:
    """Runs one model; a custom frozen-branch template is passed per call (`predict(..., templates=...)`), and the
    model caches its class features per class list and templates, so a custom template costs one text pass per
    class list, like the default one.

    The adapter is named per call (`predict(..., adapter_name=...)`), never switched with `set_adapter`, so requests
    for different adapters cannot see each other's. Calls are serialised: on a CPU torch already spreads one call
    over all cores, so running two at once would gain little. (The model itself is safe to call from several
    threads.)
    """

    def __init__(self, model: MetaPromptModel) -> None:
        # A weak reference: predictors live in a WeakKeyDictionary keyed by the model, which a strong reference
        # from the value would keep alive forever.
        self._model = weakref.ref(model)
        self._lock = threading.Lock()

    def predict(
        self, image: Image.Image, class_names: Sequence[str], template: str | None, adapter_name: str | None = None
    ) -> tuple[list[float], list[float]]:
        model = self._model()
        if model is None:  # pragma: no cover - callers hold the model while they predict
            raise RuntimeError("the model of this predictor was garbage-collected")
        templates = None if template is None else [template]
        with self._lock:
            probs, zero_shot = model.predict(
                image, list(class_names), return_zero_shot=True, templates=templates, adapter_name=adapter_name
            )
        return probs[0].tolist(), zero_shot[0].tolist()


_predictors: weakref.WeakKeyDictionary[MetaPromptModel, _Predictor] = weakref.WeakKeyDictionary()
_predictors_lock = threading.Lock()


def _predictor_for(model: MetaPromptModel) -> _Predictor:
    with _predictors_lock:
        predictor = _predictors.get(model)
        if predictor is None:
            predictor = _predictors[model] = _Predictor(model)
        return predictor


def classify(
    image: str | os.PathLike | Image.Image | None,
    class_text: str | None,
    template: str | None = None,
    adapter: str | None = None,
    *,
    model: MetaPromptModel | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Classify one image among comma-separated class names.

    Args:
        image: a file path or a PIL image.
        class_text: class names separated by commas (or new lines).
        template: the frozen-branch template with one `{}` (e.g. "a sketch of a {}"); empty or None uses the
            adapter's own template(s).
        adapter: the name of one of the model's adapters; empty or None uses the model's active one.
        model: the MetaPromptModel to use; default: `get_model()`.

    Returns:
        ({class: MetaPrompt probability}, {class: zero-shot CLIP probability}), both from one forward pass.

    Raises:
        gr.Error: for every bad input, with a message meant for the user.
    """
    if image is None:
        raise gr.Error(MSG_NO_IMAGE)
    names = parse_class_names(class_text)
    template = parse_template(template)
    model = model if model is not None else get_model()
    adapter = parse_adapter_name(adapter, model.adapter_names, model.active_adapter)
    pil = load_image(image)
    predictor = _predictor_for(model)
    try:
        probs, zero_shot = predictor.predict(pil, names, template, adapter)
    except gr.Error:
        raise
    except TextTooLongError as err:
        raise gr.Error(
            MSG_TEXT_TOO_LONG.format(name=echo(err.class_name), tokens=err.tokens, max_length=err.max_length)
        ) from err
    except ValueError as err:  # the model's own input checks (e.g. a tokenizer problem): say what, not where
        raise gr.Error(f"Could not classify: {html.escape(_cut(str(err), 300), quote=False)}") from err
    return dict(zip(names, probs)), dict(zip(names, zero_shot))


# ------------------------------------------------------------------ UI
def uploaded_path(payload: Any) -> str | None:
    """The file path in `gr.Image`'s raw payload (a `FileData`-like dict, or already a path).

    The classify event runs with `preprocess=False`: gradio's own preprocessing opens every upload with Pillow
    before the event function runs, so a file that is not an image, or a decompression bomb, would fail there with
    a generic error instead of our message. With the raw payload, `load_image` is the only code that reads it.

    Gradio checks that a `FileData` payload was uploaded, but a raw API call can send any dict or string, so the
    path must lie in gradio's upload folder (or be one of the bundled examples): the server reads no other file.

    Raises:
        gr.Error: a path outside those folders (`MSG_NOT_UPLOADED`).
    """
    if payload is None:
        return None
    path = payload.get("path") if isinstance(payload, dict) else payload
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise gr.Error(MSG_NOT_UPLOADED)
    resolved = Path(path).resolve()
    allowed = (Path(gr.utils.get_upload_folder()).resolve(), EXAMPLES_DIR.resolve())
    if not any(resolved.is_relative_to(folder) for folder in allowed):
        raise gr.Error(MSG_NOT_UPLOADED)
    return str(resolved)


def describe_model(model: MetaPromptModel | None, name: str | None = None) -> str:
    """One Markdown line about the served model."""
    if model is None:
        return f"Model: `{name or os.environ.get(MODEL_ENV_VAR) or DEFAULT_MODEL}` (loaded on the first request)."
    cfg = model.config
    templates = ", ".join(f"`{t}`" for t in cfg.templates)
    line = (
        f"Model: `{name or 'MetaPrompt adapter'}` on base CLIP `{cfg.base_model_name_or_path or 'in-memory'}`: "
        f"{cfg.n_ctx} text × {cfg.text_depth} layers and {cfg.n_pro} vision × {cfg.vision_depth} layers of prompt "
        f"tokens; default template {templates}."
    )
    if len(model.adapter_names) > 1:
        others = ", ".join(f"`{a}`" for a in model.adapter_names if a != model.active_adapter)
        line += f" Adapters on the same base: `{model.active_adapter}` (default), {others}."
    return line


def build_demo(model: MetaPromptModel | None = None, *, model_name: str | None = None) -> gr.Blocks:
    """Build the (queued) Blocks app around `model`; None means `get_model()`, loaded on the first request."""
    default_template = ", ".join(model.config.templates) if model is not None else "the adapter's own"
    # Without a model yet (loaded on the first request) the choice is the model's active adapter ("" = default).
    adapter_choices = model.adapter_names if model is not None else [""]
    default_adapter = model.active_adapter if model is not None else ""

    def run(
        image: dict[str, Any] | None, class_text: str | None, template: str | None = "", adapter: str | None = None
    ) -> tuple[dict[str, float], dict[str, float]]:
        try:
            return classify(uploaded_path(image), class_text, template, adapter, model=model)
        except gr.Error:
            raise
        except Exception as err:  # show_error is on: never send an internal message (it may echo user text)
            logger.exception("classify failed")
            raise gr.Error(MSG_INTERNAL) from err

    with gr.Blocks(title="MetaPrompt vs zero-shot CLIP") as demo:
        gr.Markdown(
            "# MetaPrompt vs zero-shot CLIP\n"
            "Upload an image (or pick an example), list the classes to choose from, and compare the MetaPrompt "
            "adapter ([Zhao et al., IEEE TIP 2024](https://arxiv.org/abs/2212.04196)) with the frozen CLIP it "
            "adapts. The learned prompts are class-agnostic, so any class names work.\n\n"
            + describe_model(model, model_name)
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(
                    type="filepath",
                    image_mode=None,
                    sources=["upload", "clipboard"],
                    label="Image",
                    elem_id="input-image",
                    height=320,
                )
            with gr.Column():
                class_text = gr.Textbox(
                    label=f"Class names (comma-separated, 2 to {MAX_CLASSES})",
                    placeholder="cat, dog, giraffe",
                    lines=2,
                    elem_id="class-names",
                )
                template = gr.Textbox(
                    value="",
                    label="Frozen-branch template (optional)",
                    placeholder=f"empty = {default_template}; e.g. a sketch of a {{}}",
                    elem_id="template",
                )
                adapter = gr.Dropdown(
                    choices=adapter_choices,
                    value=default_adapter,
                    label="Adapter",
                    interactive=len(adapter_choices) > 1,
                    visible=len(adapter_choices) > 1,
                    elem_id="adapter",
                )
                button = gr.Button("Classify", variant="primary", elem_id="classify-button")
        with gr.Row():
            metaprompt_label = gr.Label(
                num_top_classes=NUM_TOP_CLASSES, label="MetaPrompt", elem_id="metaprompt-probs"
            )
            zero_shot_label = gr.Label(
                num_top_classes=NUM_TOP_CLASSES, label="Zero-shot CLIP (frozen)", elem_id="zero-shot-probs"
            )
        gr.Examples(
            examples=[[str(EXAMPLES_DIR / file), classes, tmpl] for file, classes, tmpl, _ in EXAMPLES],
            example_labels=[caption for *_, caption in EXAMPLES],
            inputs=[image, class_text, template],
            cache_examples=False,
            api_visibility="private",
            label="Examples from several domains and styles",
        )
        gr.on(
            triggers=[button.click, class_text.submit],
            fn=run,
            inputs=[image, class_text, template, adapter],
            outputs=[metaprompt_label, zero_shot_label],
            api_name="classify",
            preprocess=False,  # raw upload payloads: see `uploaded_path`
            api_description="Probabilities of MetaPrompt, then of zero-shot CLIP, for an image and "
            "comma-separated class names; the frozen-branch template and the adapter name are optional.",
        )
    return demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_SIZE)


def __getattr__(name: str) -> Any:
    # A module-level `demo` (what `gradio spaces/app.py` looks for), built only when asked for, so importing this
    # module in tests that inject their own model loads nothing.
    if name == "demo":
        demo = build_demo(get_model())
        globals()["demo"] = demo
        return demo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Load the model now (so a bad spec fails at start-up, not on the first request) and serve the demo.

    Host and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (gradio reads them). Returns 2, after a one-line
    message, when the model cannot be loaded.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=None,
        help=f"'embedded', 'tiny', an adapter folder or a Hub id (default: ${MODEL_ENV_VAR} or '{DEFAULT_MODEL}')",
    )
    parser.add_argument(
        "--adapters",
        default=None,
        help=f"more adapters on the same base, 'name=folder_or_hub_id,...' (default: ${ADAPTERS_ENV_VAR} or none)",
    )
    args = parser.parse_args(argv)
    for flag, given, env in (("--model", args.model, MODEL_ENV_VAR), ("--adapters", args.adapters, ADAPTERS_ENV_VAR)):
        if given is not None and os.environ.get(env) and os.environ[env] != given:  # say which one is served
            print(f"{flag} {given!r} is used; ${env}={os.environ[env]!r} is ignored", file=sys.stderr)
    spec = (args.model or os.environ.get(MODEL_ENV_VAR) or DEFAULT_MODEL).strip()
    global _default_model
    try:
        _default_model = load_adapters(load_model(spec), args.adapters)
    except (OSError, RuntimeError, ValueError, TypeError) as err:  # missing files, no Hub access, bad spec
        print(f"error: could not load the model {spec!r}: {err}", file=sys.stderr)
        if spec == DEFAULT_MODEL:
            print(f"hint: {MODEL_ENV_VAR}=tiny serves a random-weight test model", file=sys.stderr)
        return 2
    print(f"metaprompt space: serving model {spec!r} with adapters {_default_model.adapter_names}")
    build_demo(_default_model, model_name=spec).launch(**LAUNCH_KWARGS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
