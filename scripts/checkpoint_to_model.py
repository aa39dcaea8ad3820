"""A model folder from a training run's checkpoint, with a shipped model's card (gain and quality rule reset).

    python scripts/checkpoint_to_model.py runs/NAME/checkpoint.pt --card-from unet-density --name NAME --out DIR

`python -m cellcount.train` writes the weights it selects (``select: best`` or ``last``) at the end; this
takes the checkpoint as it stands instead (the last step of a run, or one stopped early), so that it can be
tuned and scored like any model (`python -m cellcount.evaluate --model DIR ... --tune --write-card`). Used
for run 9 of docs/multihead_training.md.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    import torch

    from cellcount.models import load_model, save_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--card-from", required=True, help="the model whose card (architecture, settings) it gets")
    p.add_argument("--name", required=True)
    p.add_argument("--out", required=True, help="the model folder to write (replaced if it exists)")
    p.add_argument("--density-scale", type=float, default=100.0, help="the scale the run trained at")
    args = p.parse_args(argv)
    base = load_model(args.card_from)
    ck = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    net = copy.deepcopy(base.net)
    net.load_state_dict(ck["model"] if "model" in ck else ck["net"])
    card = dataclasses.replace(copy.deepcopy(base.card), name=args.name, sha256="",
                               density_scale=args.density_scale if base.output_kind != "mask" else 1.0)
    card.extra = {k: v for k, v in card.extra.items() if k not in ("quality", "novelty")}  # the base's rule and encoder features are not this model's
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    save_model(net, card, out)
    print(f"step {ck.get('step')} of {args.checkpoint} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
