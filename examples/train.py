"""Train a MetaPrompt adapter (or a baseline) with Accelerate, then evaluate it.

With no arguments it trains MetaPrompt on the embedded offline default (a small CLIP shipped in the package and
the mini world's base-to-new split) and prints Base / New / HM:

    accelerate launch examples/train.py

The paper's settings (METHOD.md §4), on your own data and base model:

    accelerate launch examples/train.py --config examples/configs/b2n_vitb16.yaml \
        --base_model openai/clip-vit-base-patch16 --dataset_name path/to/imagefolder --output_dir runs/b2n-seed1
    accelerate launch examples/train.py --config examples/configs/dg_vitb16_5shot.yaml \
        --dataset_name path/to/PACS --target_domain sketch --output_dir runs/pacs-sketch

On several GPUs or CPU processes (DDP; the meta-gradients are all-reduced by hand):

    accelerate launch --num_processes 2 examples/train.py ...
    accelerate launch --cpu --num_processes 2 examples/train.py --max_steps 4 ...

Resume after a crash, ending with the same adapter as an uninterrupted run:

    accelerate launch examples/train.py ... --checkpointing_steps 50 --resume_from_checkpoint latest

Every argument: `python examples/train.py --help`. A YAML `--config` gives defaults; the command line overrides.
"""

import sys

from metaprompt_hf.training import main

if __name__ == "__main__":
    sys.exit(main())
