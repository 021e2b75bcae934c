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
    # a warm restart: a fresh schedule on the weights of a saved model folder (the shipped model's stages 2-6;
    # `make train` runs all six)
    python train.py --dataset ... --output runs/stage2 --config configs/train_continue_d96.json --init-from runs/stage1
    python train.py --dataset ... --output runs/stage3 --config configs/train_spectra_d96.json --init-from runs/stage2
    python train.py --dataset ... --output runs/stage4 --config configs/train_generation_d96.json --init-from runs/stage3
    python train.py --dataset ... --output runs/stage5 --config configs/train_inpainting_d96.json --init-from runs/stage4
    python train.py --dataset ... --output runs/stage6 --config configs/train_headline_d96.json --init-from runs/stage5 \
        --stop-at-step 3000

``--dataset`` is a dataset folder written by ``stellar-foundation build`` or a Hub dataset id. The same run is
``stellar-foundation train ...``; this file is only the script ``accelerate launch`` needs: the training code is
`stellar_tasks.training` (nothing imports this file).
"""

from stellar_tasks.training import main

if __name__ == "__main__":
    main()
