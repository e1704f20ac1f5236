"""Which prompt learner for my data: `python -m metaprompt_hf.compare` trains every method (default: every
registered one) on a dataset with paired seeds — for each seed, every method gets the same few-shot sample and the
same seed — and answers with a ranked table, intervals and a plot.

    python -m metaprompt_hf.compare --dataset_name path/to/images --methods zeroshot,coop,metaprompt \
        --seeds 5 --shots 16 --output_dir runs/compare
    accelerate launch -m metaprompt_hf.compare ...      # the same on several processes

Every flag of `examples/train.py` applies to every method alike. Modules, in the order the command uses them:

- `arguments`: the command line (`CompareArguments`, the per-method `--config_dir` files);
- `plan`: the runs (method × seed) and their digests, the checks before any training, the printed plan;
- `tune`: `--tune`, learning rate and β chosen on the validation split with the same grids for every method;
- `runs`: running them through `training.train`, resumably, with the step time, peak memory and adapter size;
- `report`: `comparison.json`, `comparison.md`, `comparison.png`, the printed summary, the README block;
- `publish`: `--push_best_to_hub`;
- `processes`: the processes of an `accelerate launch` (only the main one writes and prints);
- `command`: the sequence, `compare(argv)` and `main`.

Outputs in `--output_dir D`: `runs/<method>/seed-<seed>/` (ordinary training output folders, loadable with
`MetaPromptModel.from_pretrained`), `comparison.json` / `.md` / `.png`, `tuning.json` with `--tune`.
"""

from __future__ import annotations

from .arguments import CompareArguments, parse_compare_args
from .command import compare, main

__all__ = ["CompareArguments", "compare", "main", "parse_compare_args"]
