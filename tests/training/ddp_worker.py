"""Run by tests/training/test_distributed.py under `accelerate launch` with two CPU processes: trains with the library loop
and writes, per rank, the final prompts and the per-step losses it saw."""

import json
import os
import sys

from safetensors.torch import save_file

from metaprompt_hf.training import parse_args, train


def main() -> None:
    args = parse_args(sys.argv[1:])
    log = []

    def record(step):
        # Asked here, after `train` built its Accelerator: a bare PartialState() made earlier would not read
        # ACCELERATE_USE_CPU and would pin the process to a non-distributed state.
        from accelerate import PartialState

        state = PartialState()
        log.append({"step": step.global_step, "loss": step.loss, "meta_test_loss": step.meta_test_loss})
        if step.global_step == step.max_steps:
            rank = state.process_index
            prompts = {k: v.contiguous().clone() for k, v in step.model.prompt_state_dict().items()}
            save_file(prompts, os.path.join(args.output_dir, f"rank{rank}_prompts.safetensors"))
            with open(os.path.join(args.output_dir, f"rank{rank}_log.json"), "w") as f:
                json.dump({"world_size": state.num_processes, "steps": log}, f)

    train(args, callbacks=[record])


if __name__ == "__main__":
    main()
