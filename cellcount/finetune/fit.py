"""The training loop of a fine-tune: crops, augmentation, precision (timed where bf16 is native), progress and cancel."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CellcountError, ParameterError

# the training precision: "auto" times both on CPUs with native bf16 and keeps the faster
PRECISIONS = ("auto", "fp32", "bf16")


# The training crops are flipped and rotated (and sometimes blurred or noised), but not rescaled, warped or
# re-lit: the user's set is imaged one way and counted at its own object size (fixed in the new card), and each
# of those jitters cost count accuracy on every validation check (docs/finetuning.md, "Augmentation"):
# validation count MAE 2.76 without them against 3.71 with the earlier jitter (scale 0.9-1.11, a third of the
# crops warped, a base model's lighting jitter) on vgg_cells (1500 steps, two draws), mbm 5.41 against 5.90
# (three draws), DSB's mixed validation split on unet-mask from label images 3.46 against 3.84.
SCALE_RANGE = (1.0, 1.0)
"""Scale jitter of the training crops (none: resampling blurs the crops as the counted images are not)."""


ELASTIC_P = 0.0
"""Share of the training crops elastically warped."""


DOTS_SCALE_RANGE, DOTS_ELASTIC_P = (0.9, 1.11), 0.3
"""The same for segmentation heads taught by dots: their targets are the base's own outlines corrected by the
dots, errors included, and the geometric jitter keeps the new model from learning those exactly (DSB's mixed
validation split, dots on unet-mask: MAE 4.57 with it, 6.46 without; docs/finetuning.md)."""


INTENSITY_JITTER = 0.0
"""Strength of the training crops' brightness / contrast / gamma jitter (see
:func:`cellcount.training.augment.intensity`; 1 as for a base model)."""


NOTE_PREFIX = "note: "
"""A progress report whose ``message`` starts so carries one of the run's notes (:class:`FinetuneProgress`)."""


@dataclass(frozen=True)
class FinetuneProgress:
    """One report of a running fine-tune: ``stage`` is 'prepare', 'train', 'tune', 'evaluate' or 'done'."""

    stage: str
    step: int = 0
    steps: int = 0
    loss: float = math.nan
    elapsed_s: float = 0.0
    remaining_s: float = math.nan
    message: str = ""
    estimated: bool = False
    """``steps`` is what the time budget is expected to buy (re-estimated as the run goes), not a fixed number."""


class Cancelled(CellcountError):
    """The fine-tune was cancelled before it finished."""


# --------------------------------------------------------------------------------------------------
# the fine-tune
# --------------------------------------------------------------------------------------------------
def _fit(net, items, *, kind: str, steps: int | None, seconds: float | None, batch_size: int, crop: int, lr: float,
         rng: np.random.Generator, report: Callable[[FinetuneProgress], None], cancel: threading.Event | None,
         loss_cfg: dict[str, Any], scale_range: tuple[float, float],
         elastic_p: float = ELASTIC_P, intensity_jitter: float = INTENSITY_JITTER,
         average_last: float = 0.0, precision: str = "fp32",
         max_steps: int | None = None, grad_under_blobs: bool = False,
         freeze_encoder: bool = False) -> tuple[int, float, list[float], dict[str, Any]]:
    """The training loop: cosine schedule over ``steps``, or over the steps that fit in ``seconds``
    (estimated from the recent steps' pace, every 10 steps; it stops when ``seconds`` are spent), at most
    ``max_steps`` of them.
    ``average_last`` > 0: the net ends with the mean of its weights after each of the last ``average_last``
    share of the steps (BatchNorm statistics included), not the last step's alone.
    ``precision``: "fp32", "bf16" (the forward pass autocast to bfloat16) or "auto": the first steps are
    timed in both on a CPU with native bf16 and the rest run in the faster (see :func:`_precision_plan`).
    ``freeze_encoder``: the contracting path keeps the base's weights and BatchNorm statistics; a step then
    back-propagates through the decoder only: more steps in a time budget, but it counted worse on vgg_cells
    (docs/finetuning.md).
    Returns (steps run, seconds, losses, the precision used: ``{"precision", "why", "s_per_step"}``)."""
    import torch

    from ..train import DEFAULTS, _batch
    from ..training.losses import density_loss, mask_loss, multihead_loss, relu_under_blobs

    # a ReLU density head passes no gradient where the base draws nothing, so cells it misses stay missed
    raw = grad_under_blobs and kind == "density" and getattr(net, "density_act", None) == "relu"
    if raw:
        net.raw_head = True
    cfg = {"train": {"batch_size": batch_size, "crop": crop},
           "augment": {**DEFAULTS["augment"], "elastic_p": elastic_p, "invert_p": 0.0,
                       "scale_range": list(scale_range), "intensity_strength": intensity_jitter}}
    frozen = net.encoder() if freeze_encoder else []
    for m in frozen:
        m.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    cap = int(max_steps) if max_steps else 1_000_000
    total = steps or min(cap, 10_000)
    warm = 10
    t0 = time.perf_counter()
    losses: list[float] = []
    net.train()
    for m in frozen:
        m.eval()  # the base's BatchNorm statistics, not the few crops'
    step = 0
    step_times = [0.0]  # elapsed seconds after each step
    pace: float | None = None  # seconds per step lately (from the third step on; the first ones warm up)
    avg: dict[str, torch.Tensor] | None = None
    n_avg = 0
    plan = _precision_plan(precision)
    schedule = dict(enumerate(plan))  # step -> precision, for the steps that time the two
    timed_steps, decide_at, retimed = set(range(len(plan))) - set(_WARMUP_STEPS), len(plan), False
    timed: dict[str, list[float]] = {"fp32": [], "bf16": []}
    chosen = {"precision": precision, "why": f"{precision}, as asked", "s_per_step": {}}
    if precision == "auto" and not plan:
        chosen = {"precision": "fp32", "why": "fp32: this CPU has no native bf16", "s_per_step": {}}
    elif plan and (steps or max_steps) and (steps or max_steps) < 4 * len(plan):  # timing: most of the run
        chosen = {"precision": "fp32", "why": f"fp32: {steps or max_steps} steps are too few to time bf16", "s_per_step": {}}
        plan, schedule, timed_steps, decide_at = (), {}, set(), 0
    while step < total:
        if cancel is not None and cancel.is_set():
            raise Cancelled("fine-tuning was cancelled")
        frac = min(step / max(total, 1), 1.0)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * frac))
        x, t = _batch(items, rng, cfg)
        xb = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
        now = schedule.get(step, chosen["precision"])
        t_step = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=now == "bf16"):
            out = net(xb)
        out = out.float()
        tt = {k: torch.from_numpy(v) for k, v in t.items()}
        if kind == "multihead":
            loss = multihead_loss(out, tt, mask_kind=loss_cfg["mask"], border_weight=loss_cfg["border_weight"],
                                  density_weight=loss_cfg.get("density_weight", 0.3),
                                  density_terms=loss_cfg["density"])
        elif kind == "mask":
            loss = mask_loss(out, tt["mask"], tt["border"], kind=loss_cfg["mask"],
                             border_weight=loss_cfg["border_weight"])
        else:
            if raw:
                out = relu_under_blobs(out, tt["density"] > 0)
            loss = density_loss(out, tt["density"], weights=loss_cfg["density"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        if step in timed_steps:
            timed[now].append(time.perf_counter() - t_step)
        step += 1
        if plan and step == decide_at:
            chosen = _choose_precision(timed, again=retimed)
        elapsed = time.perf_counter() - t0
        if plan and not retimed and step == decide_at + RETIME_AFTER:
            # the timed steps far slower than the steps since: something else had the cores while they were timed
            # (a page in the same server, a reload, another program), which weighs alike on both and hides the gap
            steady = float(np.median(np.diff([*step_times[-RETIME_AFTER + 1:], elapsed])))
            if steady * RETIME_FACTOR < chosen["s_per_step"].get(chosen["precision"], 0.0):
                retimed, timed = True, {"fp32": [], "bf16": []}
                schedule.update({step + i: p for i, p in enumerate(_RETIME_PLAN)})
                timed_steps, decide_at = set(range(step, step + len(_RETIME_PLAN))), step + len(_RETIME_PLAN)
        if steps is None and seconds and step >= 3 and (step == 3 or step % 10 == 0 or elapsed >= seconds):
            # the steps that fit in what is left of the budget, re-planned as the run goes: a shared
            # machine's speed changes within minutes, and the budget is a limit, not a target
            # over the last 50 steps: 10 swung the plan (and the steps shown) by 2x on a shared machine
            pace = recent = (elapsed - step_times[-min(50, step)]) / min(50, step)
            total = step if elapsed >= seconds else min(cap, max(step + 1, step + int((seconds - elapsed) / recent)))
        step_times.append(elapsed)
        if average_last > 0 and step >= (1.0 - average_last) * total:
            state = {k: v.detach().float() for k, v in net.state_dict().items() if v.is_floating_point()}
            if avg is None:
                avg, n_avg = {k: v.clone() for k, v in state.items()}, 1
            else:
                n_avg += 1
                for k, v in state.items():
                    avg[k] += (v - avg[k]) / n_avg
        per_step = elapsed / step
        shown, remaining = total, (total - step) * per_step
        if steps is None and seconds:  # a time budget: the time left is the budget's, whatever the speed
            left = max(seconds - elapsed, 0.0)
            # (unless the step cap ends the run first); no count before the pace is known: the first steps warm up,
            # and a total read off them undershoots several times
            shown = 0 if pace is None and left > 0 else min(total, step + int(left / (pace or per_step)))
            remaining = left if total < cap else min(remaining, left)
        report(FinetuneProgress("train", step, shown, float(np.mean(losses[-10:])), elapsed, remaining,
                                message=chosen["why"] if plan and step == decide_at else "", estimated=not steps))
    if avg is not None and n_avg > 1:
        net.load_state_dict({**net.state_dict(), **avg})
    if raw:
        net.raw_head = False
    net.eval()
    if step < len(plan):  # a time budget too short to time both
        mixed = sum(p == "bf16" for p in plan[:step])
        chosen = {"precision": "fp32" if not mixed else "fp32/bf16",
                  "why": (f"fp32 and bf16 in turn: the time budget ended after {step} steps ({mixed} in bf16), while "
                          "the two were still being timed" if mixed else
                          f"fp32: the time budget ended after {step} step(s), before bf16 could be timed"),
                  "s_per_step": {}}
    return step, time.perf_counter() - t0, losses, chosen


# "auto" precision: a warm-up step of each (memory, kernels), then two timed steps of each, alternating so
# that a change in the machine's load weighs on both alike
_AUTO_PLAN = ("fp32", "bf16", "fp32", "bf16", "fp32", "bf16")


_WARMUP_STEPS = (0, 1)
_RETIME_PLAN = _AUTO_PLAN[len(_WARMUP_STEPS):]
"""A second timing, both precisions warm by then: the timed steps of :data:`_AUTO_PLAN` again."""


# bf16 is kept only when clearly faster: its rounding costs a little accuracy for nothing otherwise
BF16_MIN_GAIN = 1.15


def _precision_plan(precision: str) -> tuple[str, ...]:
    """The precision of each of the first steps: both timed for "auto" on a CPU with native bf16 (AVX512-BF16
    or AMX: a fine-tune step ran 2x faster in bf16 on an AMX Xeon, and bf16 inference was slower than fp32 on
    a Xeon with AVX512-BF16 alone, so it is measured, not assumed), none otherwise (the whole run in
    ``precision``; fp32 for "auto" without native bf16, where it is emulated many times slower)."""
    from ..models.backends import cpu_has_bf16

    if precision not in PRECISIONS:
        raise ParameterError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return _AUTO_PLAN if precision == "auto" and cpu_has_bf16() else ()


RETIME_AFTER = 10
"""Steps after the precision's timing at which their pace is compared with the timed steps'."""
RETIME_FACTOR = 1.6
"""Timed steps this many times slower than the steps since were timed while the machine was busy: timed again."""


def _choose_precision(timed: dict[str, list[float]], *, again: bool = False) -> dict[str, Any]:
    """bf16 when its timed steps ran at least :data:`BF16_MIN_GAIN` x faster than fp32's (medians); ``again``: the
    second timing, the first having run while the machine was busy."""
    per = {k: float(np.median(v)) for k, v in timed.items() if v}
    fp32, bf16 = per.get("fp32", math.inf), per.get("bf16", math.inf)
    use = "bf16" if bf16 * BF16_MIN_GAIN <= fp32 else "fp32"
    why = (f"{use}: a training step took {bf16:.2f} s in bf16 and {fp32:.2f} s in fp32 on this CPU"
           + (" (timed again: the first timing ran while the machine was busy)" if again else "")
           + (f"; bf16 is used only where at least {BF16_MIN_GAIN:g}x faster, as its rounding costs a little "
              "accuracy" if use == "fp32" and f"{bf16:.2f}" < f"{fp32:.2f}" else ""))
    return {"precision": use, "why": why, "s_per_step": {k: round(v, 4) for k, v in per.items()}}
