"""Write a model's novelty reference: its encoder features on the DSB training split (cellcount.novelty).

    python scripts/novelty_reference.py [MODEL ...]      # default: every shipped network

For each model, every DSB training-split image (``dsb_part == "train"``: the images the shipped models
trained on; validation and test images are never read) is counted as the pipeline counts it (the card's
settings, its size estimate), the encoder features of its novelty windows (256 px, and 128 px for images
too small for that, :mod:`cellcount.novelty`) are kept, and
``weights/<model>/novelty.safetensors`` plus the card's ``extra["novelty"]`` entry are written. The quality
rule's ``max_novelty`` limit is then fitted with the rest of the rule on the validation split by
``python scripts/quality_report.py --write-card`` (run it after this script: the per-image signals change).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cellcount.io import read_image  # noqa: E402
from cellcount.models.card import write_card  # noqa: E402
from cellcount.models.loading import load_model_folder  # noqa: E402
from cellcount.novelty import NOVELTY_FILE, SETTINGS, SMALL_WINDOW_PX, WINDOW_PX, fit_reference  # noqa: E402
from cellcount.pipeline import predict  # noqa: E402
from cellcount.training.data import dsb_part, synthetic_images  # noqa: E402

DSB = ROOT.parent / "shared" / "datasets" / "dsb2018"
MODELS = ("unet-mask-varied", "unet-mask", "attention-unet-mask", "residual-unet-mask", "unet-density", "multihead-unet")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=list(MODELS))
    ap.add_argument("--data", default=str(DSB), help="DSB folder (images/ inside)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training images (a quick check)")
    ap.add_argument("--with-generated", action="store_true",
                    help="add the generated images a model's whole network trained on (its config's "
                    "data.synthetic_images, drawn again from its seed); tried on unet-mask-varied and not kept: the "
                    "flag then missed more of vgg_cells' large errors (docs/gpu_training.md)")
    args = ap.parse_args(argv)
    files = sorted(p for p in (Path(args.data) / "images").iterdir() if dsb_part(p.name) == "train")
    if args.limit:
        files = files[: args.limit]
    for name in args.models:
        folder = ROOT / "weights" / name
        model = load_model_folder(folder, with_novelty=False)  # features only; an older reference is replaced
        t0 = time.perf_counter()
        generated = _generated_training_images(folder) if args.with_generated else []
        if args.limit:
            generated = generated[: args.limit]
        images = itertools.chain((read_image(f) for f in files), (g.image for g in generated))
        # in fp32, as encoder_features' docstring says the reference is
        views = ((p.image_norm, p.maps[0], p.model_scale) for p in (predict(im, model) for im in images))
        fitted = fit_reference(model.net, views, density=model.output_kind == "density")
        if fitted is None:
            raise SystemExit(f"{name}: too few training images large enough to judge; no reference written")
        ref, n_big, n_small = fitted
        sha = ref.save(folder / NOVELTY_FILE)
        model.card.extra["novelty"] = {
            "file": NOVELTY_FILE, "sha256": sha, "images": n_big, "small_window_images": n_small, **SETTINGS,
            "features": int(ref.features.shape[1]),
            "fitted_on": "dsb2018 training split"
                         + (f" and the {len(generated)} generated images it trained on" if generated else "")
                         + f": {n_big} of {len(files) + len(generated)} images over {WINDOW_PX} px windows, "
                         f"{n_small} over {SMALL_WINDOW_PX} px windows (the others too small or empty at the model's "
                         "scale to judge; scripts/novelty_reference.py)",
        }
        write_card(model.card, folder)
        print(f"{name}: {n_big} + {n_small} (small windows) of {len(files)} images, {ref.features.shape[1]} features, "
              f"scale {ref.scale:.3f} / {ref.small.scale if ref.small else float('nan'):.3f}, "
              f"{time.perf_counter() - t0:.0f} s")
    return 0


def _generated_training_images(folder: Path) -> list:
    """The generated images a model trained on beside DSB's (its saved config's data.synthetic_images, drawn
    again from the training seed), so that images like them do not read as unfamiliar; [] for none."""
    import yaml

    cfg_file = folder / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text()) if cfg_file.is_file() else {}
    n = int((cfg.get("data") or {}).get("synthetic_images") or 0)
    if not n or (cfg.get("train") or {}).get("trainable", "all") != "all":
        return []  # none, or only new heads learnt from them: the encoder the reference reads never saw them
    seed = int((cfg.get("train") or {}).get("seed", 0))  # the training default when the config names none
    return list(synthetic_images(n, seed=seed, varied=bool(cfg["data"].get("synthetic_varied"))))


if __name__ == "__main__":
    raise SystemExit(main())
