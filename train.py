"""Self-supervised training of the stellar foundation model, under `accelerate launch` or plain `python`.

One model, no task-specific heads: every step each star shows a random subset of its observations and is
asked for R others, which are removed from its input. Loss: Gaussian NLL with label errors in quadrature.

Launch lines (all take the same arguments; ``--mixed-precision`` or accelerate's own flag picks bf16/fp16):

    # one CPU process
    python train.py --dataset data/apogee-gaia-xp --output runs/apogee-xp
    # several CPU processes (gloo). NB: `--cpu --num_processes 2` silently starts ONE process.
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 train.py --dataset ... --output ...
    # one GPU, bf16
    accelerate launch --mixed_precision bf16 train.py --dataset ... --output ...
    # several GPUs on one machine (DDP), or fully sharded
    accelerate launch --config_file configs/accelerate_ddp.yaml train.py --dataset ... --output ...
    accelerate launch --config_file configs/accelerate_fsdp.yaml train.py --dataset ... --output ...
    # several machines (run on each, machine_rank 0..N-1)
    accelerate launch --multi_gpu --num_machines 2 --num_processes 16 --machine_rank 0 \
        --main_process_ip 10.0.0.1 --main_process_port 29500 train.py --dataset ... --output ...
    # resume the newest checkpoint of a stopped run, or stop cleanly after a time budget
    python train.py --dataset ... --output runs/apogee-xp --resume
    python train.py --dataset ... --output runs/apogee-xp --max-minutes 60
    # the shipped model's whole training: every phase of the recipe (configs/recipe.json; `make train` runs it),
    # each into --output/<phase>; run again, it skips the finished phases and resumes the stopped one
    python train.py --recipe configs/recipe.json --dataset ... --output runs/stellar-foundation-apogee-xp
    # a warm restart: a fresh schedule on the weights of a saved model folder
    python train.py --dataset ... --output runs/more --config my_settings.json --init-from runs/apogee-xp

``--dataset`` is a dataset folder written by ``stellar-foundation build`` or a Hub dataset id. The same run is
``stellar-foundation train ...``; this file is only the script ``accelerate launch`` needs: the training code is
`stellar_tasks.training`, the recipe runner `stellar_tasks.recipe` (nothing imports this file).
"""

from stellar_tasks.recipe import main

if __name__ == "__main__":
    main()
