"""Training CLI: ``python -m cellcount.train --config configs/NAME.yaml [--key.sub value ...]``.

Writes ``weights/<name>/`` (safetensors weights + card.json + the resolved config.yaml). Checkpoints go
to ``runs/<name>/checkpoint.pt`` every validation; ``--resume`` continues from there.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("cellcount.train")

DEFAULTS: dict[str, Any] = {
    "name": "model",
    "architecture": "unet",
    "output_kind": "mask",
    "description": "",
    "model": {"base_width": 16, "depth": 4, "out_channels": 2},
    "data": {
        "root": "../shared/datasets/dsb2018",
        "val_fraction": 0.2,
        "split_seed": 0,
        "synthetic_images": 0,
        "bright_oversample": 1.0,
        "limit": None,
        # hold the test half of the held-out split out of validation (training.data.dsb_part)
        "hold_out_test": False,
        # generated images from the wide range users bring (training.data.varied_synthetic)
        "synthetic_varied": False,
        # share of each batch drawn from the generated images (None: in proportion to their number)
        "synthetic_share": None,
        # stain-jittered copies of each colour training image (training.augment.hed_jitter)
        "hed_variants": 0,
    },
    "train": {
        "steps": 1500,
        "batch_size": 12,
        "crop": 128,
        "lr": 2e-3,
        "weight_decay": 1e-4,
        "warmup_steps": 50,
        "val_every": 300,
        "seed": 0,
        "threads": 2,
        "density_scale": 100.0,
        # "last": ship the final (cosine-annealed) weights; "best": the checkpoint with the lowest
        # validation MAE (on the validation half of the held-out split when data.hold_out_test is on).
        "select": "best",
        # "bf16": autocast the forward pass to bfloat16 on CPUs with AVX512-BF16/AMX (about 2x faster
        # training here); losses and optimizer state stay fp32. "fp32": plain float32.
        "precision": "fp32",
        # "all": every weight trains; "new_outputs": only the output channels that init.from added (the
        # trunk, its BatchNorm statistics and the source's output channels stay exactly as trained).
        "trainable": "all",
        # multihead: a density model folder whose maps on each training crop replace the label-drawn density
        # targets (distillation: the density head learns to count as that model does); None = the labels
        "distill_density": None,
        # "auto": a CUDA GPU when present, else the CPU; or "cpu" / "cuda"
        "device": "auto",
        # processes building batches beside the training loop (0: in the loop, as on a 2-core laptop); each
        # draws from its own random stream, so a run with workers is not step-for-step that run without
        "workers": 0,
        # seconds of training to fit (None: run ``steps``): after 100 and again after 1000 steps the step
        # count is cut to what fits at the pace measured (FIT_AFTER_STEPS), and the card records the steps
        # run; its saved config.yaml repeats them as a plain step count
        "time_budget_s": None,
        # number of validations when time_budget_s fits the steps (val_every follows the fitted count)
        "validations": 5,
    },
    # background_margin (multihead): raw density pushed below -margin wherever the target is 0 (0 = off)
    "loss": {"mask": "bce_dice", "border_weight": 0.5, "contact_weight": 0.0, "density_weight": 1.0,
             "background_margin": 0.0,
             "density": {"pixel": 1.0, "multiscale": 1.0, "count": 0.1}},
    "augment": {"scale_range": [0.6, 1.6], "elastic_p": 0.3, "invert_p": 0.05, "wide_scale_p": 0.0,
                "wide_scale_range": [0.25, 4.0]},
    "inference": {"tile_size": 256, "tile_overlap": 32},
    "input": {"grayscale": "mean", "low_pct": 1.0, "high_pct": 99.8},
    "postprocess": {},
    # Start from trained weights instead of a random init (a second, fine-tuning stage): a weights folder
    # with card.json whose architecture and kwargs match this config. Recorded in the card with its sha256.
    "init": {"from": None},
    "out_dir": "weights",
    "run_dir": "runs",
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _set_dotted(cfg: dict[str, Any], key: str, raw: str) -> None:
    import yaml

    value = yaml.safe_load(raw)
    node = cfg
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def load_config(path: str | Path | None, overrides: list[str]) -> dict[str, Any]:
    """Defaults < config file < ``--key.sub value`` overrides."""
    import yaml

    cfg = copy.deepcopy(DEFAULTS)
    if path:
        with open(path, encoding="utf-8") as fh:
            cfg = _merge(cfg, yaml.safe_load(fh) or {})
    if len(overrides) % 2:
        raise SystemExit(f"overrides must be '--key value' pairs, got {overrides}")
    for k, v in zip(overrides[::2], overrides[1::2]):
        if not k.startswith("--"):
            raise SystemExit(f"override keys start with '--', got {k!r}")
        _set_dotted(cfg, k[2:], v)
    _check_input(cfg)
    return cfg


def _check_input(cfg: dict[str, Any]) -> None:
    """The card records input.low_pct / high_pct as the model's reading of images, and counting reads every image
    with the CountParams defaults: a config asking for other percentiles would train one way and count another."""
    pct = (cfg["input"].get("low_pct"), cfg["input"].get("high_pct"))
    if pct != (DEFAULTS["input"]["low_pct"], DEFAULTS["input"]["high_pct"]):
        raise SystemExit(f"input.low_pct / input.high_pct {pct} are not supported: models are trained and counted "
                         f"with the percentiles {DEFAULTS['input']['low_pct']} / {DEFAULTS['input']['high_pct']}")


def _batch(items, rng, cfg, weights=None):
    from .training.augment import augment

    tr, au = cfg["train"], cfg["augment"]
    imgs, tgts = [], []
    for _ in range(tr["batch_size"]):
        it = items[int(rng.choice(len(items), p=weights))]
        # generated images already span nucleus sizes of 6-80 px: a wide scale jitter on top would make
        # 1-2 px specks that real images never show
        wide_p = 0.0 if it.name.startswith("synthetic_") else au.get("wide_scale_p", 0.0)
        img, tg = augment(
            it.image, it.targets, size=tr["crop"], rng=rng,
            scale_range=tuple(au["scale_range"]), elastic_p=au["elastic_p"], invert_p=au["invert_p"],
            wide_scale_p=wide_p, wide_scale_range=tuple(au.get("wide_scale_range", (0.25, 4.0))),
            intensity_strength=au.get("intensity_strength", 1.0),
        )
        imgs.append(img)
        tgts.append(tg)
    x = np.stack(imgs)[:, None]
    t = {k: np.stack([tg[k] for tg in tgts])[:, None].astype(np.float32) for k in tgts[0]}
    return x, t


def network_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """The network's constructor arguments for a training config (its ``model`` section and output kind)."""
    kind = cfg["output_kind"]
    kwargs = {"in_channels": 1, **cfg["model"], "head": "density" if kind == "density" else "mask"}
    if kind == "density":
        kwargs["out_channels"] = 1
    if kind == "multihead":  # fg, border and density: three output channels, or two plus a density branch
        kwargs["out_channels"] = 2 if kwargs.get("density_branch") else 3
    return kwargs


def validate(net, items, cfg, card) -> dict[str, float]:
    """Full-image validation: count MAE etc. with the card's postprocessing (fp32, tiled), rescaled by the
    model's own nucleus size estimate where it has one, as counting does."""
    from .metrics import count_metrics
    from .models.base import NetModel
    from .pipeline import CountParams, needs_size_model, postprocess, predict, resolve_params

    was_training = net.training
    model = NetModel(copy.deepcopy(net), card)
    params: CountParams = resolve_params(model, None)
    if needs_size_model(model, params):  # its size estimate is another network's: count at the training scale
        params = resolve_params(model, {"auto_nucleus_size": False})
    true, pred, dens = [], [], []
    for it in items:
        # the count a user gets, incl. a rescale by the model's own size estimate (multihead, density)
        # normalized input says nothing of its background: the item's (split_mode "auto" acts on dark ones only)
        prediction = dataclasses.replace(predict(it.image, model, params, fast=True, normalized=True),
                                         inverted=it.inverted)
        res = postprocess(prediction, params, measure=False)
        true.append(it.count)
        pred.append(res.count_estimate)
        dens.append(res.density_count)
    net.train(was_training)
    out = count_metrics(np.array(true), np.array(pred))
    if card.output_kind == "multihead":  # the density head's own count, which the quality flag compares
        out["density_mae"] = float(np.mean(np.abs(np.array(dens, float) - np.array(true))))
    return out


def train(cfg: dict[str, Any], *, resume: bool = False) -> Path:
    import torch
    import yaml

    from .models import ModelCard, create_model, save_model
    from .training.data import load_dsb_split, synthetic_items
    from .training.losses import density_loss, mask_loss, multihead_loss

    _check_input(cfg)
    tr = cfg["train"]
    if tr["select"] not in ("best", "last"):
        raise ValueError(f"train.select must be 'best' or 'last', got {tr['select']!r}")
    if tr.get("precision", "fp32") not in ("fp32", "bf16"):
        raise ValueError(f"train.precision must be 'fp32' or 'bf16', got {tr['precision']!r}")
    use_bf16 = tr.get("precision") == "bf16"
    device = _train_device(tr.get("device", "auto"))
    torch.set_num_threads(int(tr["threads"]))
    torch.manual_seed(tr["seed"])
    rng = np.random.default_rng(tr["seed"])
    kind = cfg["output_kind"]
    if kind not in ("mask", "density", "multihead"):
        raise ValueError(f"output_kind must be 'mask', 'density' or 'multihead', got {kind!r}")
    scale = float(tr["density_scale"]) if kind in ("density", "multihead") else 1.0
    d = cfg["data"]
    t0 = time.time()
    train_items, val_items = load_dsb_split(
        d["root"], kind=kind, val_fraction=d["val_fraction"], seed=d["split_seed"], density_scale=scale,
        limit=d.get("limit"), grayscale=cfg["input"]["grayscale"], hold_out_test=bool(d.get("hold_out_test")),
        hed_variants=int(d.get("hed_variants") or 0), rng=np.random.default_rng([tr["seed"], 7]),
    )
    n_dsb = len(train_items)
    if d.get("synthetic_images"):
        train_items += synthetic_items(d["synthetic_images"], kind=kind, density_scale=scale, seed=tr["seed"],
                                       grayscale=cfg["input"]["grayscale"], varied=bool(d.get("synthetic_varied")))
    logger.info("data ready in %.1fs: %d train items, %d val", time.time() - t0, len(train_items), len(val_items))

    # bright-background (stained/brightfield) images are a minority and the hardest: sample them more
    w = np.array([d.get("bright_oversample", 1.0) if it.inverted else 1.0 for it in train_items])
    share = d.get("synthetic_share")
    if share is not None and len(train_items) > n_dsb:
        w[:n_dsb] *= (1 - share) / w[:n_dsb].sum()
        w[n_dsb:] *= share / w[n_dsb:].sum()
    sample_p = w / w.sum()
    # a multihead network's outputs are raw (logits, logits, density before its ReLU): the mask head form
    model_kwargs = network_kwargs(cfg)
    net = create_model(cfg["architecture"], **model_kwargs).to(memory_format=torch.channels_last)
    init_info = None
    if (cfg.get("init") or {}).get("from"):
        init_info = _init_from(net, cfg["init"]["from"], cfg["architecture"], model_kwargs)
    net = net.to(device)
    frozen = _freeze_all_but_new_outputs(net, init_info) if tr.get("trainable", "all") == "new_outputs" else False
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=tr["lr"],
                            # decoupled decay would shrink the frozen output channels too
                            weight_decay=0.0 if frozen else tr["weight_decay"])
    warm = int(tr["warmup_steps"])
    plan = {"steps": int(tr["steps"]), "val_every": int(tr["val_every"])}  # time_budget_s may cut both
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(warm, 1))
        * 0.5 * (1 + math.cos(math.pi * min(s / plan["steps"], 1.0)))
    )
    card = ModelCard(
        name=cfg["name"], architecture=cfg["architecture"], output_kind=kind, kwargs=model_kwargs,
        description=cfg.get("description", ""), tile_size=cfg["inference"]["tile_size"],
        tile_overlap=cfg["inference"]["tile_overlap"], density_scale=scale,
        postprocess=dict(cfg.get("postprocess") or {}),
        postprocess_tuned_on="not tuned (config defaults)",
        normalization={"low_pct": cfg["input"]["low_pct"], "high_pct": cfg["input"]["high_pct"], "invert": "auto",
                       "grayscale": cfg["input"]["grayscale"]},
    )
    run_dir = Path(cfg["run_dir"]) / cfg["name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoint.pt"
    start, best, history = 0, None, []
    resumed_fit = False
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=True, map_location=device)
        net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        start, history = int(ck["step"]), json.loads(ck["history"])
        fitted = json.loads(ck.get("plan") or "{}")
        if fitted.get("fitted"):  # a time budget fitted the run's length: the resumed run keeps it, unrefitted
            plan.update(fitted)
            resumed_fit = True
        rng = np.random.default_rng([tr["seed"], start])
        logger.info("resumed from %s at step %d", ckpt_path, start)
    # the best validation so far travels in the checkpoint: a resumed run still chooses among every step
    best_state = ck.get("best_net") if resume and ckpt_path.exists() else None
    if best_state is not None:
        best = json.loads(ck["best"])
    teacher = _density_teacher(tr.get("distill_density"), scale, device) if kind == "multihead" else None
    batches = _batches(train_items, rng, cfg, sample_p, workers=int(tr.get("workers") or 0), start=start)
    _train_mode(net, frozen)
    t_start, running = time.time(), []
    step = start
    fit_marks = [(start, 0.0)]  # (step, seconds since the start): the pace between the last two fits the budget
    while step < plan["steps"]:
        x, t = next(batches)
        xb = torch.from_numpy(x).to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = net(xb)
        out = out.float()
        tt = {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in t.items()}
        if teacher is not None:  # on the training device: no round trip through the CPU
            tt["density"] = teacher(xb)
        if kind == "multihead":
            loss = multihead_loss(
                out, tt, mask_kind=cfg["loss"]["mask"],
                border_weight=cfg["loss"]["border_weight"], contact_weight=cfg["loss"]["contact_weight"],
                density_weight=cfg["loss"].get("density_weight", 1.0), density_terms=cfg["loss"]["density"],
                background_margin=cfg["loss"].get("background_margin", 0.0),
            )
        elif kind == "mask":
            loss = mask_loss(
                out, tt["mask"], tt["border"],
                kind=cfg["loss"]["mask"], border_weight=cfg["loss"]["border_weight"],
                contact_weight=cfg["loss"]["contact_weight"],
            )
        else:
            loss = density_loss(out, tt["density"], weights=cfg["loss"]["density"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running.append(loss.item())
        step += 1
        if tr.get("time_budget_s") and not resumed_fit and step - start in FIT_AFTER_STEPS:
            fit_marks.append((step, time.time() - t_start))
            _fit_to_budget(plan, fit_marks, tr)
        if step % 50 == 0:
            logger.info("step %d/%d loss %.4f lr %.2e %.3fs/step", step, plan["steps"], np.mean(running[-50:]),
                        sched.get_last_lr()[0], (time.time() - t_start) / (step - start))
        if step % plan["val_every"] == 0 or step == plan["steps"]:
            net.eval()
            m = validate(net, val_items, cfg, card)
            _train_mode(net, frozen)
            history.append({"step": step, "loss": float(np.mean(running[-50:])), **m})
            logger.info("validation at step %d: MAE %.2f RMSE %.2f bias %+.2f", step, m["mae"], m["rmse"],
                        m["bias"])
            if "density_mae" in m:
                logger.info("validation density_mae %.2f", m["density_mae"])
            if best is None or _rank(m) <= _rank(best) or (tr["select"] == "last" and step == plan["steps"]):
                best = {"step": step, **m}
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "step": step, "history": json.dumps(history), "best": json.dumps(best),
                        "best_net": best_state, "plan": json.dumps(plan)}, ckpt_path)
    if best_state is not None:
        net.load_state_dict(best_state)
    net = net.cpu()
    steps = plan["steps"]
    if plan.get("fitted"):  # the saved config repeats the run as a plain step count
        cfg = _merge(cfg, {"train": {"steps": steps, "val_every": plan["val_every"], "time_budget_s": None,
                                     "fitted_to_budget_s": tr["time_budget_s"]}})
        tr = cfg["train"]
    train_s = time.time() - t_start
    val_names = sorted(it.name for it in val_items)
    card.training = {
        "data": f"DSB 2018 stage1_train subset ({d['root']}), {len(train_items)} training images"
        + (f" incl. {d['synthetic_images']} synthetic" if d.get("synthetic_images") else ""),
        "split": {"rule": f"sha1('{d['split_seed']}:'+filename) % 10000 < {d['val_fraction']} * 10000 -> validation",
                  "n_train": len(train_items), "n_val": len(val_items), "val_files": val_names},
        "steps": steps, "batch_size": tr["batch_size"], "crop_px": tr["crop"],
        "epochs_equivalent": round(steps * tr["batch_size"] / max(len(train_items), 1), 1),
        "loss": {"mask": cfg["loss"]["mask"], "density": cfg["loss"]["density"],
                 "background_margin": cfg["loss"].get("background_margin", 0.0)} if kind == "multihead"
        else cfg["loss"]["mask"] if kind == "mask" else cfg["loss"]["density"],
        "train_seconds": round(train_s, 1), "threads": tr["threads"], "precision": tr.get("precision", "fp32"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "workers": int(tr.get("workers") or 0),
        "history": history, "selected_step": best["step"] if best else steps,
        "config": cfg.get("config_path") or f"configs/{cfg['name']}.yaml",
    }
    # every real image the weights learnt from, here and before init.from (generated ones have no file)
    seen = {it.file_sha256 for it in train_items if it.file_sha256}
    seen_pixels = {it.pixel_sha256 for it in train_items if getattr(it, "pixel_sha256", None)}
    if init_info:
        seen |= set(init_info.pop("train_sha256", []))
        seen_pixels |= set(init_info.pop("train_pixel_sha256", []))
        card.training["init_from"] = init_info
    card.training["train_sha256"] = sorted(seen)
    card.training["train_pixel_sha256"] = sorted(seen_pixels)
    card.metrics = {"validation": {k: v for k, v in (best or {}).items() if k != "step"},
                    "validation_note": "full DSB validation images, the config's postprocessing (not tuned); "
                    + ("final weights" if tr["select"] == "last" else "checkpoint chosen by validation MAE")}
    out = Path(cfg["out_dir"]) / cfg["name"]
    save_model(net, card, out)
    (out / "config.yaml").write_text(yaml.safe_dump(portable_config(cfg), sort_keys=False))
    logger.info("saved %s (%.0fs training, best val MAE %.2f at step %s)", out, train_s,
                best["mae"] if best else float("nan"), best["step"] if best else "-")
    return out


def portable_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` as saved beside the weights, with no path that only exists on the training machine: absolute
    output folders and config path become relative to the working directory, or the defaults (the config's
    own file name) when they lie outside it."""
    out = dict(cfg)
    for key in ("out_dir", "run_dir", "config_path"):
        if cfg.get(key) is None:
            continue
        path = Path(str(cfg[key]))
        if path.is_absolute():
            try:
                path = path.resolve().relative_to(Path.cwd().resolve())
            except ValueError:
                path = Path(DEFAULTS[key]) if key in DEFAULTS else Path(path.name)
        out[key] = path.as_posix()
    return out


# steps after which a time budget refits the run's length: the first fit is rough (the GPU, the batch workers
# and cuDNN warm up over the first steps: 0.042 s/step there against 0.029 later on an H200), the second exact
FIT_AFTER_STEPS = (100, 1000)


def _train_device(name: str):
    """``train.device``: "auto" (CUDA when present), "cpu" or "cuda"."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"train.device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is 'cuda' but PyTorch sees no CUDA GPU here")
    return torch.device(name)


def _fit_to_budget(plan: dict[str, int], marks: list[tuple[int, float]], tr: dict[str, Any]) -> None:
    """Cut ``plan['steps']`` to what fits ``train.time_budget_s`` at the pace since the previous mark (validations
    included through a reserve of a tenth of the budget) and spread ``train.validations`` over it."""
    budget = float(tr["time_budget_s"])
    (prev_step, prev_s), (step, elapsed) = marks[-2], marks[-1]
    per_step = max((elapsed - prev_s) / max(step - prev_step, 1), 1e-6)
    fit = step + int(max(budget * 0.9 - elapsed, 0) / per_step)
    plan["steps"] = max(step, min(int(tr["steps"]), fit))
    plan["fitted"] = True
    # rounded up, so that the last periodic validation is the final step's, not one a few steps before it
    plan["val_every"] = max(1, math.ceil(plan["steps"] / max(int(tr.get("validations") or 1), 1)))
    logger.info("time budget %.0fs: %.4fs/step -> %d steps, validation every %d", budget, per_step,
                plan["steps"], plan["val_every"])


def _batches(items, rng, cfg, sample_p, *, workers: int, start: int):
    """Training batches for ever: built in the loop (``workers`` 0) or by that many processes, each with its
    own random stream (seeded by the run's seed, the worker and the step it starts at)."""
    import multiprocessing

    if workers > 0 and "fork" not in multiprocessing.get_all_start_methods():
        # the workers share the loaded images by fork (no pickling of a few GB per worker); without it
        # (Windows) the loop builds the batches itself
        logger.warning("train.workers %d: this system cannot fork processes; batches are built in the loop", workers)
        workers = 0
    if workers <= 0:
        while True:
            yield _batch(items, rng, cfg, sample_p)

    import torch

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            own = np.random.default_rng([int(cfg["train"]["seed"]), start, info.id if info else 0])
            while True:
                yield _batch(items, own, cfg, sample_p)

    loader = torch.utils.data.DataLoader(Stream(), batch_size=None, num_workers=workers, prefetch_factor=4,
                                         multiprocessing_context=multiprocessing.get_context("fork"),
                                         collate_fn=_as_built)
    yield from loader


def _as_built(batch):
    """The batch as ``_batch`` built it (numpy arrays): the loader's default collation would copy it to tensors."""
    return batch


def _density_teacher(folder: str | None, scale: float, device=None):
    """``train.distill_density``: a function from a batch of crops to the density model's maps in this
    training's density scale (a float32 tensor (B, 1, H, W) on the crops' device), or None. The teacher sees the
    same normalised crops."""
    if not folder:
        return None
    import torch

    from .models.loading import load_model_folder

    teacher = load_model_folder(folder)
    if teacher.output_kind != "density":
        raise ValueError(f"train.distill_density: {folder} is a {teacher.output_kind} model, not a density model")
    net = teacher.net.eval()
    if device is not None:
        net = net.to(device)
    factor = scale / float(teacher.card.density_scale)
    logger.info("density targets distilled from %s (sha256 %s)", folder, teacher.card.sha256[:12])

    def maps(xb):
        with torch.no_grad():
            return torch.relu(net(xb.float())) * factor

    return maps


def _freeze_all_but_new_outputs(net, init_info: dict[str, Any] | None) -> bool:
    """Train only what init.from did not provide (a new branch, the added rows of a grown output layer):
    the new head learns from features the source trained, and the source's own outputs stay bit-identical
    (its measured quality carries over)."""
    import torch

    info = init_info or {}
    fresh = set(info.get("fresh_parameters") or ())
    if not fresh and not info.get("output_channels_added"):
        raise ValueError("train.trainable: new_outputs needs init.from a model with fewer outputs than this one")
    for key, p in net.named_parameters():
        p.requires_grad_(key in fresh)
    if info.get("output_channels_added"):  # a grown output layer: only its new rows learn
        n_src = int(info["output_channels_src"])
        for p in (net.out.weight, net.out.bias):
            p.requires_grad_(True)
            keep = torch.zeros_like(p)
            keep[n_src:] = 1.0
            p.register_hook(lambda g, keep=keep: g * keep)
    return True


def _rank(m: dict[str, float]) -> tuple[float, float]:
    """Checkpoints are chosen by count MAE; ties (a frozen trunk whose segmentation does not change while the
    density head trains, under settings that do not read its size estimate) go to the better density count."""
    return m["mae"], m.get("density_mae", 0.0)


def _train_mode(net, frozen: bool) -> None:
    """Training mode, except frozen BatchNorm layers keep their running statistics."""
    import torch

    net.train()
    if frozen:
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not any(
                    p.requires_grad for p in m.parameters()):
                m.eval()


def _init_from(net, folder: str, architecture: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Load the weights of a trained model folder into ``net`` (same architecture and kwargs)."""
    from .models.loading import load_model_folder

    src = load_model_folder(folder)  # checks the sha256
    differs = {k for k in set(kwargs) | set(src.card.kwargs) if kwargs.get(k) != src.card.kwargs.get(k)}
    if src.card.architecture != architecture or not differs <= {"out_channels", "head", "density_branch"}:
        raise ValueError(f"init.from {folder}: architecture/kwargs {src.card.architecture} {src.card.kwargs} "
                         f"differ from this config's {architecture} {kwargs}")
    state, own = src.net.state_dict(), net.state_dict()
    grown, n_src = [], None
    for key, value in state.items():
        if own[key].shape == value.shape:
            own[key] = value
        else:  # the output layer of a network with more heads: its first channels come from the source
            n = value.shape[0]
            own[key][:n] = value
            grown.append(key)
            n_src = n
    net.load_state_dict(own)
    fresh = [k for k in own if k not in state]
    logger.info("initialised from %s (sha256 %s)%s%s", folder, src.card.sha256[:12],
                f"; output channels beyond the source's start fresh: {grown}" if grown else "",
                f"; {len(fresh)} tensors not in the source start fresh" if fresh else "")
    return {"folder": str(folder), "sha256": src.card.sha256, "steps": src.card.training.get("steps"),
            "config": src.card.training.get("config"), "output_channels_added": bool(grown), "output_channels_src": n_src,
            "fresh_parameters": sorted(k for k, _ in net.named_parameters() if k not in state),
            "train_sha256": sorted(src.card.training_digests()),  # moved to the new card's own lists
            "train_pixel_sha256": sorted(src.card.training_pixel_digests())}


def build_parser() -> argparse.ArgumentParser:
    from .cliparams import prog_name

    # the usage line names the config's own overrides, which argparse does not know (parse_known_args)
    p = argparse.ArgumentParser(
        prog=prog_name("cellcount.train"), usage="%(prog)s [-h] --config CONFIG [--resume] [--KEY.SUB VALUE ...]",
        description="Train a model from scratch from a config (configs/ holds the shipped models' own; to adapt a "
        "model to your images in minutes, use finetune). Any value of the config can be overridden: --train.steps "
        "200 --data.root DIR.")
    # required: the defaults alone read ../shared/datasets/dsb2018 and write weights/model, which means nothing to a user
    p.add_argument("--config", required=True, help="YAML config (configs/ holds the shipped models' own)")
    p.add_argument("--resume", action="store_true", help="continue from runs/<name>/checkpoint.pt")
    return p


def main(argv: list[str] | None = None) -> int:
    import yaml

    from .errors import run_cli

    args, overrides = build_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    def body() -> int:
        cfg = load_config(args.config, overrides)
        if args.config:
            cfg["config_path"] = str(args.config)
        train(cfg, resume=args.resume)
        return 0

    return run_cli(body, also=(yaml.YAMLError,))


if __name__ == "__main__":
    raise SystemExit(main())
