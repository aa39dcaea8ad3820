"""Share of its threads' CPU time each backend's forward pass gets (not a test): the busy check of the backend
timing (`cellcount.models.autotune.MIN_CPU_SHARE`) counts a timing whose fastest calls got less as made under load.

    python scripts/probe_cpu_share.py [MODEL ...] [--rounds 4]

Prints, per model and call, each backend's wall time on a 256 px tile and process CPU time / (wall x threads),
then the load average and the machine's CPU.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    import torch

    import cellcount as cc
    from cellcount.memory import keep_freed_memory
    from cellcount.models.autotune import cpu_model
    from cellcount.models.backends import available_backends

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", default=["unet-mask-varied", "unet-density"])
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args()
    keep_freed_memory()  # as the CLI and the app run
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 1, (1, 1, 256, 256)).astype(np.float32))
    x = x.contiguous(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    print(f"CPU: {cpu_model()}, {threads} threads; load average {os.getloadavg()}")
    for name in args.models:
        model = cc.load_model(name)
        nets = {b: model.fast_net(b) for b in available_backends()}
        with torch.inference_mode():
            for net in nets.values():
                net(x)
            for r in range(args.rounds):
                for backend, net in nets.items():
                    time.sleep(0.01)
                    c0, t0 = time.process_time(), time.perf_counter()
                    net(x)
                    dt, dc = time.perf_counter() - t0, time.process_time() - c0
                    print(f"{name:18s} round {r}  {backend:12s} {dt * 1000:7.1f} ms  CPU share {dc / (dt * threads):.2f}")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
