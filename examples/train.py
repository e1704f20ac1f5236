"""Train a MetaPrompt adapter (or a baseline) with Accelerate, then evaluate it: the library's run written out as
a recipe you can copy and change.

With no arguments it trains MetaPrompt on the embedded offline default (a small CLIP shipped in the package and
the mini world's base-to-new split) and prints Base / New / HM:

    accelerate launch examples/train.py

The paper's settings (docs/method.md §4), on your own data and base model:

    accelerate launch examples/train.py --config examples/configs/b2n_vitb16.yaml \
        --base_model openai/clip-vit-base-patch16 --dataset_name path/to/imagefolder --output_dir runs/b2n-seed1
    accelerate launch examples/train.py --config examples/configs/dg_vitb16_5shot.yaml \
        --dataset_name path/to/PACS --target_domain sketch --output_dir runs/pacs-sketch

A benchmark of the paper kit, fetched from the Hub into DATA/ first (docs/paper_protocols.md):

    accelerate launch examples/train.py --dataset_name eurosat --data_dir DATA --download

Paper parity (the reference's meta step as it ran): `--config examples/configs/b2n_vitb16_faithful.yaml`.
On several GPUs or CPU processes: `accelerate launch --num_processes 2 examples/train.py ...` (DDP; the meta
gradients are all-reduced by hand). Resume after a crash, ending with the same adapter as an uninterrupted run:
`... --checkpointing_steps 50 --resume_from_checkpoint latest`. Every argument: `python examples/train.py --help`.
"""

import sys
from collections.abc import Sequence

from metaprompt_hf.protocols import load_protocol_data
from metaprompt_hf.protocols.run import run_templates
from metaprompt_hf.training import (
    USER_ERRORS,
    build_model,
    check_trainable,
    evaluate_run,
    fetch_data,
    parse_args,
    push_adapter,
    save_adapter,
    start_run,
    train_loop,
    write_run_files,
)


def main(argv: Sequence[str] | None = None) -> int:
    # 1. Arguments: model / data / training groups, a YAML --config gives defaults, the command line overrides;
    #    --plugins modules are imported first, so --method / --protocol accept what they register.
    try:
        args = parse_args(argv)
        method = args.build_method()  # the registered method with its --method_args
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        # 2. The run: Accelerator (DDP, mixed precision, accumulation, trackers), logging, seed, resume point.
        run = start_run(args)
        # 3. Data: the protocol's few-shot training set and evaluation sets (bad input fails here, before training).
        with run.accelerator.main_process_first():
            fetch_data(args)  # --download: the dataset from the Hub into --data_dir, checked and unpacked safely
            data, proto = load_protocol_data(args)
        check_trainable(args, proto, data)
        write_run_files(args, run, proto, data)
        # 4. Model: the base CLIP and a fresh adapter of --method, with the dataset's hand-crafted templates.
        model = build_model(args, run_templates(args.template, args.dataset_name))
        # 5. Train: the method's loss (+ its meta step) per optimizer step, its hooks, checkpoints, logging.
        step = 0
        if method.trains:
            step = train_loop(args, run, model, proto, method=method)
            save_adapter(run, model)
        # 6. Evaluate (Base / New / HM, or the DG target accuracy, also logged to the trackers at the final step) and
        #    optionally push adapter + model card.
        results = evaluate_run(args, run, model, proto, data, step=step) if args.do_eval else []
        if args.push_to_hub:
            push_adapter(args, run, model, proto, data, results)
        run.accelerator.end_training()
    except USER_ERRORS as err:  # bad input, and a NaN/inf loss, gradient or prompt (training stops at that step)
        print(f"error: {err}", file=sys.stderr)
        return 2
    # 7. A run whose loss or prompts blew up is recorded as diverged in results.json and is not a result.
    return 1 if run.diverged else 0


if __name__ == "__main__":
    sys.exit(main())
