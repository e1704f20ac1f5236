"""`--push_best_to_hub REPO`: the best method's adapter of its median seed, with the run's model card and the
comparison's table appended, uploaded in one commit (docs/architecture.md §5.2)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..constants import CONFIG_NAME, MODEL_CARD_NAME, WEIGHTS_NAME
from ..data.loading import DataError
from .report import hyperparameter_note, summary_lines, table


def median_seed(summary: dict[str, Any], method: str) -> int:
    """The seed whose score is the median of `method`'s (the lower one of the middle two for an even count)."""
    per_seed = summary["methods"][method]["per_seed"]
    ordered = sorted(per_seed, key=lambda s: (per_seed[s], int(s)))
    return int(ordered[(len(ordered) - 1) // 2])


def comparison_card_section(summary: dict[str, Any]) -> str:
    return "\n".join(
        [
            "",
            f"## How this method compared on {summary['dataset']}",
            "",
            f"`{summary['settings']['command']}`: {len(summary['seeds'])} paired seeds, {summary['shots']} shots, "
            f"protocol {summary['protocol']}. This adapter is the run of the median seed.",
            "",
            table(summary).rstrip("\n"),
            "",
            hyperparameter_note(summary),
            "",
            *[f"- {line}" for line in summary_lines(summary)[:2]],
            "",
        ]
    )


def push_best(
    summary: dict[str, Any],
    output_dir: Path,
    repo_id: str,
    *,
    api: Any | None = None,
    token: str | None = None,
    private: bool = False,
) -> Any:
    """Upload `runs/<best>/seed-<median>/`'s adapter pair and card (with the comparison) to `repo_id`."""
    from huggingface_hub import HfApi

    best = summary["ranking"][0]
    seed = median_seed(summary, best)
    run = output_dir / "runs" / best / f"seed-{seed}"
    if not (run / WEIGHTS_NAME).is_file():
        raise DataError(f"push_best_to_hub: the best method {best!r} has no adapter in {run} (nothing was trained)")
    api = api if api is not None else HfApi(token=token)
    created = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    repo_id = getattr(created, "repo_id", None) or repo_id
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "adapter")
        folder.mkdir()
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            shutil.copyfile(run / name, folder / name)
        card = (run / MODEL_CARD_NAME).read_text(encoding="utf-8") if (run / MODEL_CARD_NAME).is_file() else ""
        (folder / MODEL_CARD_NAME).write_text(card.rstrip("\n") + "\n" + comparison_card_section(summary))
        return api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=str(folder),
            commit_message=f"Upload {best} (seed {seed}), the best of a comparison on {summary['dataset']}",
        )
