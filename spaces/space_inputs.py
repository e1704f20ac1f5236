"""What the demo Space accepts from a user, as pure functions and constants: the limits (documented in the Space's
README.md), the messages the UI and the API show (the tests match on them), and the parsing of class names,
templates, adapter names and images. `app.py` builds the UI and the model calls on top of them."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence

import gradio as gr
from PIL import Image, UnidentifiedImageError

from metaprompt_hf.inputs.images import to_rgb

MODEL_ENV_VAR = "METAPROMPT_MODEL"
ADAPTERS_ENV_VAR = "METAPROMPT_ADAPTERS"
MAX_ADAPTER_NAME_CHARS = 64
DEFAULT_MODEL = "embedded"
MAX_CLASSES = 100
MAX_CLASS_NAME_CHARS = 80
MAX_TEMPLATE_CHARS = 200
MAX_IMAGE_PIXELS = 40_000_000  # 40 megapixels (8000 x 5000): most camera photos; decoded RGB is 120 MB at most
MAX_UPLOAD_SIZE = "20mb"  # gradio's upload limit (launch(max_file_size=...)); bigger files are refused unread
# `load_image` checks the exact limit from the header. Pillow's own guard (a warning above its limit, an error above
# twice it) is lowered to the same value as a second line of defence for any other decode in this process.
if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > MAX_IMAGE_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

MAX_ECHO_CHARS = 60  # user text quoted back in an error message is cut to this many characters

# ------------------------------------------------------------------ messages (the tests match on them)
MSG_NO_IMAGE = "Please upload an image (or pick one of the examples)."
MSG_TOO_FEW_CLASSES = "Please enter at least two class names, separated by commas (e.g. 'cat, dog')."
MSG_NOT_AN_IMAGE = "This file is not an image that can be read; please upload a PNG, JPEG, WebP, BMP or GIF file."
MSG_CORRUPT_IMAGE = "This image file is damaged or truncated and cannot be decoded; please upload another one."
MSG_NOT_UPLOADED = (
    "The image must be uploaded with the request (gradio_client: handle_file(path)); files on the server are not read."
)
MSG_UNKNOWN_ADAPTER = "Unknown adapter"
MSG_TEXT_TOO_LONG = (
    "The template with the class name {name} takes {tokens} tokens, but the text encoder reads at most {max_length}: "
    "the class name would be cut off. Please use a shorter template or class name."
)
MSG_INTERNAL = "Something went wrong on the server while classifying this image; the error has been logged."


def echo(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """User text for an error message: quoted, cut to `limit` characters and HTML-escaped, since gradio renders
    `gr.Error` messages as HTML (a class name like `<img src=x>` would otherwise show an image or a link)."""
    return html.escape(repr(_cut(text, limit)), quote=False)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _too_large_message(width: int | None = None, height: int | None = None) -> str:
    size = f" ({width} x {height} = {width * height / 1e6:.1f} megapixels)" if width and height else ""
    return f"This image is too large{size}; the limit is {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels."


# ------------------------------------------------------------------ input parsing (pure functions)
def _name_key(name: str) -> str:
    # The model turns `_` into spaces, so "golden_retriever" and "Golden Retriever" would be the same prompt.
    return " ".join(name.replace("_", " ").casefold().split())


def parse_class_names(text: str | None) -> list[str]:
    """Split comma- (or newline-) separated class names, trimming spaces and dropping empty entries.

    Raises:
        gr.Error: fewer than two names, more than `MAX_CLASSES`, a name longer than `MAX_CLASS_NAME_CHARS`, or
            duplicates (compared ignoring case, repeated spaces and underscores).
    """
    if text is not None and not isinstance(text, str):
        raise gr.Error(f"The class names must be text, got {type(text).__name__}.")
    parts = re.split(r"[,\n]", text or "")
    names = [" ".join(part.split()) for part in parts]
    names = [name for name in names if name]
    if len(names) < 2:
        got = f" Got only {echo(names[0])}." if names else ""
        raise gr.Error(MSG_TOO_FEW_CLASSES + got)
    if len(names) > MAX_CLASSES:
        raise gr.Error(f"Too many class names: {len(names)}; the maximum is {MAX_CLASSES}.")
    for name in names:
        if len(name) > MAX_CLASS_NAME_CHARS:
            raise gr.Error(
                f"Class name {echo(name, 30)} is {len(name)} characters long; the maximum is {MAX_CLASS_NAME_CHARS}."
            )
    seen: dict[str, str] = {}
    for name in names:
        key = _name_key(name)
        if key in seen:
            raise gr.Error(
                f"Duplicate class name: {echo(seen[key])} and {echo(name)} (names are compared ignoring case, spaces "
                "and underscores)."
            )
        seen[key] = name
    return names


def parse_template(text: str | None) -> str | None:
    """The frozen-branch template, or None for the adapter's own; it must hold exactly one `{}`.

    Raises:
        gr.Error: a template without `{}`, with other braces, or longer than `MAX_TEMPLATE_CHARS`.
    """
    if text is not None and not isinstance(text, str):
        raise gr.Error(f"The template must be text, got {type(text).__name__}.")
    template = " ".join((text or "").split())
    if not template:
        return None
    if len(template) > MAX_TEMPLATE_CHARS:
        raise gr.Error(f"The template is {len(template)} characters long; the maximum is {MAX_TEMPLATE_CHARS}.")
    bad = (
        f"The template {echo(template)} must contain '{{}}' exactly once, where the class name goes "
        "(e.g. 'a sketch of a {}')."
    )
    if template.count("{}") != 1:
        raise gr.Error(bad)
    try:  # other braces ("{0}", "{name}", a lone "{") would break str.format inside the model
        template.format("x")
    except (IndexError, KeyError, ValueError) as err:
        raise gr.Error(bad) from err
    return template


def parse_adapter_name(name: str | None, available: Sequence[str], default: str) -> str:
    """The adapter a request names (`default` when it names none); it must be one of `available`.

    Raises:
        gr.Error: a name that is not text or not among the served adapters (`MSG_UNKNOWN_ADAPTER`).
    """
    if name is not None and not isinstance(name, str):
        raise gr.Error(f"The adapter name must be text, got {type(name).__name__}.")
    name = (name or "").strip()
    if not name:
        return default
    if name not in available:
        choices = ", ".join(echo(a) for a in available)
        raise gr.Error(f"{MSG_UNKNOWN_ADAPTER} {echo(name)}; this Space serves: {choices}.")
    return name


def parse_adapter_specs(text: str | None) -> dict[str, str]:
    """`name=folder_or_hub_id` pairs separated by commas (or new lines), as in $METAPROMPT_ADAPTERS, in order.

    Raises:
        ValueError: an entry without `=`, an empty or repeated name, a name with characters other than letters,
            digits, `_` and `-`, or one longer than `MAX_ADAPTER_NAME_CHARS`; the message names the entry.
    """
    specs: dict[str, str] = {}
    for entry in re.split(r"[,\n]", text or ""):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, source = (part.strip() for part in entry.partition("="))
        if not sep or not name or not source:
            raise ValueError(f"{ADAPTERS_ENV_VAR}: expected 'name=folder_or_hub_id', got {entry!r}")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name) or len(name) > MAX_ADAPTER_NAME_CHARS:
            raise ValueError(
                f"{ADAPTERS_ENV_VAR}: adapter name {name!r} must be 1 to {MAX_ADAPTER_NAME_CHARS} letters, digits, "
                "'_' or '-'"
            )
        if name in specs:
            raise ValueError(f"{ADAPTERS_ENV_VAR}: adapter name {name!r} is given twice")
        specs[name] = source
    return specs


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise gr.Error(_too_large_message(width, height))


def load_image(image: str | os.PathLike | Image.Image | None) -> Image.Image:
    """Open and fully decode an image (a path or a PIL image) as RGB, refusing images over `MAX_IMAGE_PIXELS`.

    The size is read from the header before any pixel is decoded, so a decompression bomb costs nothing.

    Raises:
        gr.Error: no image, not an image, a corrupt or truncated file, or too many pixels.
    """
    if image is None:
        raise gr.Error(MSG_NO_IMAGE)
    if isinstance(image, Image.Image):
        _check_size(*image.size)
        im = image
    else:
        try:
            # Between the limit and twice it, Pillow only warns (DecompressionBombWarning); `_check_size` refuses.
            # (No warnings.catch_warnings() here: it swaps process-wide state and requests run in threads.)
            im = Image.open(image)
            try:
                _check_size(*im.size)
                im.load()
            except BaseException:
                im.close()  # don't leave the upload's file handle to the garbage collector
                raise
        except gr.Error:  # our own message (gr.Error is a ValueError, so it must pass before the clauses below)
            raise
        except Image.DecompressionBombError as err:
            raise gr.Error(_too_large_message()) from err
        except UnidentifiedImageError as err:
            raise gr.Error(MSG_NOT_AN_IMAGE) from err
        except FileNotFoundError as err:
            raise gr.Error(MSG_NO_IMAGE) from err
        except (OSError, SyntaxError, ValueError, EOFError) as err:  # Pillow's ways of saying "truncated/corrupt"
            raise gr.Error(MSG_CORRUPT_IMAGE) from err
    try:  # the package's one conversion: EXIF orientation, 16-bit/float scaling, transparency on white
        return to_rgb(im)
    except (OSError, ValueError) as err:
        raise gr.Error(MSG_CORRUPT_IMAGE) from err


# ------------------------------------------------------------------ model loading
