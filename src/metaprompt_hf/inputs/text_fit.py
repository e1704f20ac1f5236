"""Texts that fit the text encoder: every (template, class name) string is tokenized in full and checked against
the backbone's maximum text length (its position embeddings: 77 for CLIP) with the prompt tokens included, before
anything is encoded.

A string longer than that would be cut at the end. When the cut reaches the class name, every class can end up
with the same text (and zero-shot answers become exactly uniform), so such a pair is refused with an error naming
the template, the class and the token counts — unless the user asked for truncation explicitly
(`MetaPromptModel.truncate_long_texts = True`), when it is cut with a warning. A cut that only drops the end of the
template after the class name is made with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["TextTooLongError", "check_class_texts", "fit_text_rows"]


class TextTooLongError(ValueError):
    """A (template, class name) pair whose class name would be cut off by the text encoder's maximum length;
    `template`, `class_name`, `tokens` (the whole text's count) and `max_length` say which and by how much."""

    def __init__(self, message: str, template: str, class_name: str, tokens: int, max_length: int) -> None:
        super().__init__(message)
        self.template, self.class_name, self.tokens, self.max_length = template, class_name, tokens, max_length


def fit_text_rows(
    tokenizer: Any,
    template: str,
    names: Sequence[str],
    max_len: int,
    *,
    truncation: bool = False,
    what: str = "template",
) -> list[list[int]]:
    """Token ids (with the special tokens) of `template.format(name)` for each name, each at most `max_len` long.

    Args:
        template: the string around the class name, with one `{}`; for the prompted branch it holds the placeholder
            words of the prompt tokens ("X X {}."), so they are counted.
        names: class names as the encoder reads them (already cleaned).
        truncation: cut rows whose class name does not fit (with a warning) instead of raising.
        what: how messages call the template ("template", "prompted text").

    Raises `TextTooLongError` naming the template, the class and the token counts."""
    texts = [template.format(name) for name in names]
    ids = tokenizer(texts, padding=False, truncation=False, verbose=False)["input_ids"]
    long_rows = [i for i, row in enumerate(ids) if len(row) > max_len]
    if not long_rows:
        return ids
    head = template.split("{}", 1)[0]
    heads = tokenizer([head + names[i] for i in long_rows], padding=False, truncation=False, verbose=False)
    cut_names: list[tuple[int, str]] = []
    for i, head_ids in zip(long_rows, heads["input_ids"]):
        # head_ids ends with the end-of-text token, which the encoder keeps: the name fits if this row does.
        detail = (
            f"{what} {_short(template)} with class {_short(names[i])}: {len(ids[i])} tokens, the text encoder reads at most "
            f"{max_len}, and the text up to the end of the class name takes {len(head_ids)}"
        )
        if len(head_ids) > max_len:
            cut_names.append((i, detail))
        else:
            logger.warning("%s; the end of the template after the class name is cut", detail)
    if cut_names and not truncation:
        more = f" (and {len(cut_names) - 1} more)" if len(cut_names) > 1 else ""
        first, detail = cut_names[0]
        raise TextTooLongError(
            f"{detail}{more}: the class name would be cut off, so classes could not be told apart. Use a shorter "
            "template or class name, fewer prompt tokens, or set `truncate_long_texts = True` on the model "
            "(training: --truncate_long_texts) to cut anyway",
            template,
            names[first],
            len(ids[first]),
            max_len,
        )
    for _, detail in cut_names:
        logger.warning("%s; the class name is cut (truncation was asked for)", detail)
    cut = tokenizer([texts[i] for i in long_rows], padding=False, truncation=True, max_length=max_len)["input_ids"]
    for i, row in zip(long_rows, cut):
        ids[i] = row
    return ids


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def check_class_texts(model: Any, class_names: Sequence[str], templates: Sequence[str] | None = None) -> None:
    """Tokenize — never encode — every text `model` (a `MetaPromptModel`) would build for `class_names`: the
    prompted text of its active adapter and each template (default: the adapter's), so a run refuses a class name
    that does not fit before any work starts. Raises `TextTooLongError`."""
    if model.config.n_ctx:
        model._tokenize(class_names, True)
    for template in templates or model.config.templates:
        model._tokenize(class_names, False, template=template)
