#!/usr/bin/env python
"""Speed and memory of LIP, always beside its baselines and printed as ratios.

    python tools/benchmark.py                  # op + model level, CI-sized inputs
    python tools/benchmark.py --quick          # smaller inputs, fewer repeats
    python tools/benchmark.py --op-shape 8 256 112 112 --skip-models
    python tools/benchmark.py --skip-op --pooling all   # one Faster R-CNN row per MODEL.LIP.POOLING
    python tools/benchmark.py --amp-check 100  # bfloat16 (CPU) / float16 (CUDA) training, no inf/NaN
    OMP_NUM_THREADS=1 python tools/benchmark.py --backbones-only --profile  # backbone + FPN pair, top ops
    python tools/benchmark.py --backbones-only --default-malloc  # glibc hands freed memory back

The tool first makes glibc keep freed CPU memory for reuse, as lip_det's CPU training tools
do (:func:`lip_lab.utils.malloc.keep_freed_memory`); ``--default-malloc`` measures without it.

Every comparison is measured in one run with the contenders interleaved (A, B, A, B, ...) and
summarised by medians, so a loaded machine slows all of them alike. Training steps are
Detectron2's own (SimpleTrainer; AMPTrainer for the CUDA autocast check).
"""
import argparse
import functools
import itertools
import os
import statistics
import sys
import time
from unittest import mock
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import profile
from detectron2.engine import AMPTrainer, SimpleTrainer, hooks
from detectron2.modeling import build_backbone, build_model
from detectron2.solver import build_lr_scheduler, build_optimizer
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from tqdm import tqdm

from lip_det.layers import POOLINGS, lip2d, lip2d_reference, recomputes
from lip_det.layers.lip2d.triton_kernels import triton, triton_usable
from lip_lab.cli import load_config, reports_input_errors
from lip_lab.data.user_coco import model_class_count
from lip_lab.utils.complexity import count_gflops, count_parameters
from lip_lab.utils.dispatch import DispatchCounter
from lip_lab.utils.malloc import keep_freed_memory
from lip_lab.utils.memory import SavedTensors
from lip_lab.utils.table import format_table

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MODEL_PAIRS = {
    "Faster R-CNN": ("faster_rcnn_r50.yaml", "faster_rcnn_lip_r50.yaml"),
    "RetinaNet": ("retinanet_r50.yaml", "retinanet_lip_r50.yaml"),
}
MiB = 2.0**20


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(tasks, repeats, warmup=1, desc=None):
    """Seconds of each run of each zero-argument callable in ``tasks`` (name -> fn), interleaved:
    name -> list of ``repeats`` times, the i-th of every name taken in the same round."""
    times = {name: [] for name in tasks}
    for i in tqdm(range(warmup + repeats), desc=desc, leave=False, disable=desc is None):
        for name, fn in tasks.items():
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def interleaved_medians(tasks, repeats, warmup=1, desc=None):
    """Median seconds of each zero-argument callable in ``tasks`` (name -> fn), interleaved."""
    return {name: statistics.median(ts) for name, ts in interleaved_times(tasks, repeats, warmup, desc).items()}


def ratio_spread(times, base):
    """name -> (min, max) over rounds of the time ratio to ``base`` within the same round: the
    noise of the median ratio on a shared machine."""
    return {name: (min(r), max(r)) for name, ts in times.items()
            for r in [[t / b for t, b in zip(ts, times[base])]]}


def op_contenders(device):
    """name -> fn(x, logit) for the op benchmark: the formula (eagerly, and compiled on CUDA),
    LIP's impls, then fixed pooling for scale."""
    cuda = device.type == "cuda"
    contenders = {"lip2d reference": lambda x, logit: lip2d(x, logit, impl="reference")}
    if cuda:
        contenders["lip2d reference, torch.compile"] = torch.compile(lip2d_reference)
    impls = ["fused"] + (["triton"] if cuda and triton_usable(device) else [])
    contenders.update({f"lip2d {impl}": (lambda x, logit, impl=impl: lip2d(x, logit, impl=impl)) for impl in impls})
    contenders["max_pool2d 3x3/2"] = lambda x, logit: F.max_pool2d(x, 3, 2, 1)
    contenders["avg_pool2d 3x3/2"] = lambda x, logit: F.avg_pool2d(x, 3, 2, 1)
    return contenders


def lip2d_fewest_bytes(x, out):
    """Bytes lip2d must move forward + backward at least: forward reads x and logit and writes
    the output; backward reads the output gradient, x and logit and writes both gradients."""
    return x.element_size() * (6 * x.numel() + 2 * out.numel())


def copy_bandwidth(device, dtype, repeats, numel=2**26):
    """Bytes per second of ``dst.copy_(src)`` on ``device`` (read + write), median of ``repeats``."""
    src = torch.empty(numel, device=device, dtype=dtype).normal_()
    dst = torch.empty_like(src)

    def run():
        dst.copy_(src)
        _sync(device)

    seconds = interleaved_medians({"copy": run}, repeats)["copy"]
    return 2 * src.element_size() * numel / seconds


def benchmark_op(shape, device="cpu", dtype=torch.float32, repeats=5):
    """Forward+backward time, bandwidth and memory saved for backward of each contender on ``shape``.

    Returns:
        list of dict(name, ms, speedup, saved_mib, extra_mib, extra_ratio, gbps, copy_share);
        ratios are against "lip2d reference" measured in the same run; ``gbps`` counts
        :func:`lip2d_fewest_bytes` (LIP rows), ``copy_share`` is that against a device copy
        measured in the same run.
    """
    device = torch.device(device)
    gen = torch.Generator(device).manual_seed(0)
    x = torch.randn(shape, device=device, dtype=dtype, generator=gen).requires_grad_()
    logit = (12 * torch.rand(shape, device=device, dtype=dtype, generator=gen)).requires_grad_()
    contenders = op_contenders(device)

    def step(fn):
        def run():
            fn(x, logit).sum().backward()
            x.grad = logit.grad = None
            _sync(device)
        return run

    seconds = interleaved_medians({name: step(fn) for name, fn in contenders.items()}, repeats,
                                  desc=f"op {tuple(shape)} {device.type} {dtype}")
    copy = copy_bandwidth(device, dtype, repeats)
    rows = []
    for name, fn in contenders.items():
        saved = SavedTensors(excluded=(x, logit))
        with saved.recording():
            out = fn(x, logit)
        saved.exclude(out)
        gbps = lip2d_fewest_bytes(x, out) / seconds[name] / 1e9 if name.startswith("lip2d") else None
        rows.append({"name": name, "ms": 1e3 * seconds[name], "saved_mib": saved.total / MiB,
                     "extra_mib": saved.extra / MiB, "gbps": gbps,
                     "copy_share": None if gbps is None else gbps * 1e9 / copy})
        del out
    ref = rows[0]
    for row in rows:
        row["speedup"] = ref["ms"] / row["ms"]
        row["extra_ratio"] = row["extra_mib"] / ref["extra_mib"]
    return rows, copy


def synthetic_batch(num_images, height, width, classes, seed=0):
    """Random images with three ground-truth boxes each, in Detectron2's input format."""
    gen = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(num_images):
        corners = torch.rand(3, 2, 2, generator=gen) * torch.tensor([width, height])
        boxes = torch.cat([corners.min(1).values, corners.max(1).values + 8], 1)
        inst = Instances((height, width))
        inst.gt_boxes = Boxes(boxes.clamp(max=torch.tensor([width, height] * 2) - 1))
        inst.gt_classes = torch.randint(0, classes, (3,), generator=gen)
        image = torch.randint(0, 256, (3, height, width), generator=gen).float()
        batch.append({"image": image, "height": height, "width": width, "instances": inst})
    return batch


class _Autocast(torch.nn.Module):
    """Runs a detector's forward under autocast, for :class:`SimpleTrainer` (AMPTrainer needs CUDA)."""

    def __init__(self, model, device_type, dtype):
        super().__init__()
        self.model, self.device_type, self.dtype = model, device_type, dtype

    def forward(self, batch):
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.model(batch)


def build_trainer(cfg, batch, dtype=None):
    """A Detectron2 trainer of ``cfg``'s model, optimizer and lr schedule on ``batch`` repeated
    (lr scaled linearly to its size), under autocast in ``dtype`` if given."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.SOLVER.BASE_LR *= len(batch) / cfg.SOLVER.IMS_PER_BATCH
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optimizer = build_optimizer(cfg, model)
    data = itertools.repeat(batch)
    if dtype is None:
        trainer = SimpleTrainer(model, data, optimizer)
    elif model.device.type == "cuda":
        trainer = AMPTrainer(model, data, optimizer, precision=dtype)
    else:
        trainer = SimpleTrainer(_Autocast(model, model.device.type, dtype), data, optimizer)
    trainer.register_hooks([hooks.LRScheduler(optimizer, build_lr_scheduler(cfg, optimizer))])
    return trainer


def _inference(model, batch):
    def run():
        with torch.no_grad():
            model(batch)
        _sync(model.device)
    return run


def _activation_bytes(model, batch):
    """Bytes saved for backward by one training forward, parameters excluded."""
    saved = SavedTensors(excluded=list(model.parameters()))
    with saved.recording():
        losses = sum(model(batch).values())
    del losses
    return saved.extra


def benchmark_models(cfgs, image_size=(256, 320), batch_size=2, repeats=3):
    """Train-step / inference time, activation memory, params and GFLOPs of each model.

    Activation memory is what one training forward saves for backward (parameters
    excluded), the part of training memory that the backbone changes; GFLOPs are fvcore's
    count for the backbone (with FPN) on the batch's padded images, ``backbone_params``
    that backbone's parameters, ``params`` the whole detector's.

    Args:
        cfgs: name -> Detectron2 config; the first one is the baseline for the ratios.
    Returns:
        dict name -> dict(train_ms, infer_ms, saved_mib, params, backbone_params, gflops,
        ``*_ratio`` against the first config for each figure, and ``train_ms_ratio_spread``: the
        (min, max) over rounds of the train-step ratio, its noise).
    """
    trainers, batches, rows = {}, {}, {}
    with EventStorage(0):  # Detectron2's training losses log to it
        for name, cfg in cfgs.items():
            batches[name] = synthetic_batch(batch_size, *image_size, model_class_count(cfg)[1])
            trainers[name] = build_trainer(cfg, batches[name])
            model = trainers[name].model
            rows[name] = {
                "params": count_parameters(model),
                "backbone_params": count_parameters(model.backbone),
                "gflops": count_gflops(model.backbone.eval(), model.preprocess_image(batches[name]).tensor),
            }
            model.backbone.train()
            rows[name]["saved_mib"] = _activation_bytes(model, batches[name]) / MiB
        train = interleaved_times({n: t.run_step for n, t in trainers.items()}, repeats, desc="train steps")
    models = {name: trainer.model.eval() for name, trainer in trainers.items()}
    infer = interleaved_medians({n: _inference(m, batches[n]) for n, m in models.items()}, repeats, desc="inference")
    base = rows[next(iter(cfgs))]
    spread = ratio_spread(train, next(iter(cfgs)))
    for name, row in rows.items():
        row["train_ms"], row["infer_ms"] = 1e3 * statistics.median(train[name]), 1e3 * infer[name]
        row["train_ms_ratio_spread"] = spread[name]
    for row in rows.values():
        for key in ("train_ms", "infer_ms", "saved_mib", "params", "backbone_params", "gflops"):
            row[f"{key}_ratio"] = row[key] / base[key]
    return rows


def _backbone_step(backbone, images, dtype=None):
    """One training forward + backward of ``backbone``, under autocast in ``dtype`` if given."""
    autocast = torch.autocast(images.device.type, dtype=dtype, enabled=dtype is not None)

    def run():
        with autocast:
            outputs = backbone(images)
        sum(out.float().sum() for out in outputs.values()).backward()
        backbone.zero_grad(set_to_none=True)
        _sync(images.device)
    return run


def _cuda_peak_mib(step, device):
    """MiB that one call of ``step`` allocates on the GPU at its peak, beyond what was allocated before."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    return (torch.cuda.max_memory_allocated(device) - before) / MiB


def benchmark_backbones(cfgs, image_size, batch_size=2, repeats=7, profile_rows=0, dtype=None):
    """Training forward + backward of each config's backbone (with FPN) on one random batch.

    Args:
        cfgs: name -> Detectron2 config; the first one is the baseline for the ratios.
        profile_rows: if > 0, also profile one step of each and keep the top ops by self CPU time.
        dtype: run the steps under autocast in this dtype (None: float32).
    Returns:
        dict name -> dict(ms, saved_mib, gflops, params, their ``*_ratio`` against the first,
        ``ms_ratio_spread`` (min, max of the per-round time ratio) and ``profile``: the
        profiler's table or None). ``saved_mib`` is what one training
        forward saves for backward, parameters excluded; ``gflops`` fvcore's forward count;
        on CUDA ``peak_mib``, what one step allocates at its peak (``torch.cuda.max_memory_allocated``).
    """
    images = torch.randn(batch_size, 3, *image_size, generator=torch.Generator().manual_seed(0))
    backbones, rows = {}, {}
    for name, cfg in cfgs.items():
        torch.manual_seed(0)
        backbone = build_backbone(cfg).to(cfg.MODEL.DEVICE)
        x = images.to(cfg.MODEL.DEVICE)
        rows[name] = {"params": count_parameters(backbone), "gflops": count_gflops(backbone.eval(), x)}
        backbones[name] = (backbone.train(), x)
        saved = SavedTensors(excluded=list(backbone.parameters()))
        with saved.recording(), torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
            outputs = backbone(x)
        rows[name]["saved_mib"] = saved.extra / MiB
        del outputs
    steps = {name: _backbone_step(*pair, dtype) for name, pair in backbones.items()}
    times = interleaved_times(steps, repeats, desc="backbone steps")
    spread = ratio_spread(times, next(iter(cfgs)))
    for name, row in rows.items():
        row["ms"], row["ms_ratio_spread"] = 1e3 * statistics.median(times[name]), spread[name]
        device = backbones[name][1].device
        if device.type == "cuda":
            row["peak_mib"] = _cuda_peak_mib(steps[name], device)
        row["profile"] = None
        if profile_rows:
            with profile() as prof:
                steps[name]()
            row["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=profile_rows)
    base = rows[next(iter(cfgs))]
    for row in rows.values():
        for key in ("ms", "saved_mib", "gflops", "params", "peak_mib"):
            if key in row:
                row[f"{key}_ratio"] = row[key] / base[key]
    return rows


def count_dispatched_ops(cfgs, image_size=(64, 64), batch_size=2):
    """ATen ops and Triton launches of one training forward + backward of each config's backbone
    (:class:`~lip_lab.utils.dispatch.DispatchCounter`).

    Returns:
        dict name -> (total, Counter of op names), after one warm-up step.
    """
    images = torch.randn(batch_size, 3, *image_size, generator=torch.Generator().manual_seed(0))
    counts = {}
    for name, cfg in cfgs.items():
        torch.manual_seed(0)
        backbone = build_backbone(cfg).to(cfg.MODEL.DEVICE).train()
        step = _backbone_step(backbone, images.to(cfg.MODEL.DEVICE))
        step()
        with DispatchCounter() as counter:
            step()
        counts[name] = (counter.total, counter.counts)
    return counts


def pooling_cfgs(load, poolings):
    """Configs of the per-operator rows: "vanilla" (R50-FPN Faster R-CNN, the ratios' baseline)
    first, then LIP-R50-FPN Faster R-CNN with ``MODEL.LIP.POOLING`` set to each of ``poolings``.

    Every row trains at lr 0: a step costs the same at any lr, and randomly initialised
    detectors of some operators diverge within a few steps (``sum`` under FrozenBN scales
    features up to 9x per slot), which would stop the run.

    Args:
        load: fn(config file name, *KEY VALUE overrides) -> Detectron2 config.
    Returns:
        dict name ("vanilla" or the operator) -> config, for :func:`benchmark_models`.
    """
    vanilla, lip = MODEL_PAIRS["Faster R-CNN"]
    lr = ("SOLVER.BASE_LR", 0.0)
    return {"vanilla": load(vanilla, *lr),
            **{pooling: load(lip, *lr, "MODEL.LIP.POOLING", pooling) for pooling in poolings}}


def amp_check(cfg, iterations=100, image_size=(256, 320), batch_size=2, dtype=None):
    """Trains ``cfg``'s model under autocast for ``iterations`` and returns the total losses.

    Optimizer and lr schedule (warmup included) are ``cfg``'s, lr scaled to ``batch_size``.
    Autocast runs in bfloat16 on CPU and float16 on CUDA unless ``dtype`` says otherwise.
    Raises:
        FloatingPointError: Detectron2's, at the first non-finite loss, naming the iteration.
    """
    dtype = dtype or (torch.float16 if cfg.MODEL.DEVICE.startswith("cuda") else torch.bfloat16)
    trainer = build_trainer(cfg, synthetic_batch(batch_size, *image_size, model_class_count(cfg)[1]), dtype)
    trainer.train(0, iterations)
    return [loss for loss, _ in trainer.storage.history("total_loss").values()]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small inputs and 3 repeats (smoke run)")
    parser.add_argument("--op-shape", type=int, nargs=4, metavar=("N", "C", "H", "W"))
    parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, help="timed repetitions per contender (median)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-op", action="store_true")
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--skip-backbones", action="store_true", help="model rows: only the detectors")
    parser.add_argument("--pooling", nargs="+", choices=POOLINGS + ("all",), metavar="NAME",
                        help="model rows: vanilla Faster R-CNN and one LIP row per MODEL.LIP.POOLING "
                             f"operator (any of {', '.join(POOLINGS)}, or all) instead of the detector pairs")
    parser.add_argument("--amp-check", type=int, metavar="ITERS",
                        help="only train LIP Faster R-CNN ITERS iterations under autocast")
    parser.add_argument("--configs-dir", type=Path, default=CONFIGS)
    parser.add_argument("--backbone-size", type=int, nargs=2, metavar=("H", "W"),
                        help="backbone + FPN rows' input size (default: 384 512 on CPU, 800 1344 on CUDA)")
    parser.add_argument("--backbones-only", action="store_true", help="only the backbone + FPN rows")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc as it is (freed memory goes back to the OS; every large "
                             "tensor is faulted in anew) instead of keeping freed memory")
    parser.add_argument("--profile", type=int, nargs="?", const=10, default=0, metavar="ROWS",
                        help="print each backbone's top ROWS ops (default 10) by self CPU time")
    args = parser.parse_args(argv)
    args.op_shape = args.op_shape or ([2, 32, 56, 56] if args.quick else [8, 64, 112, 112])
    args.image_size = args.image_size or ([128, 160] if args.quick else [256, 320])
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.backbone_size = args.backbone_size or (
        [128, 160] if args.quick else [800, 1344] if args.device.startswith("cuda") else [384, 512])
    if args.pooling and "all" in args.pooling:
        args.pooling = list(POOLINGS)
    return args


def load_cfg(args, name, *opts):
    return load_config(str(args.configs_dir / name), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", args.device, *opts])


def _device_name(device):
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device.type} ({torch.get_num_threads()} threads)"


def run_op(args):
    device = args.device
    for dtype in args.dtypes:
        rows, copy = benchmark_op(args.op_shape, device, getattr(torch, dtype), args.repeats)
        print(f"\nlip2d forward+backward, {tuple(args.op_shape)} {dtype} on {_device_name(device)} "
              f"(median of {args.repeats}, interleaved); saved = memory kept for backward, "
              "extra = saved minus the op's inputs and output; GB/s = the fewest bytes lip2d must move "
              f"(x, logit, output and their gradients) per second; % copy = against a device copy measured "
              f"in the same run ({copy / 1e9:.0f} GB/s)")
        print(format_table(
            ["op", "ms", "speed vs reference", "GB/s", "% copy", "saved MiB", "extra MiB", "extra vs reference"],
            [[r["name"], f"{r['ms']:.2f}", f"x{r['speedup']:.2f}",
              "" if r["gbps"] is None else f"{r['gbps']:.3g}",
              "" if r["copy_share"] is None else f"{100 * r['copy_share']:.0f}%", f"{r['saved_mib']:.1f}",
              f"{r['extra_mib']:.1f}", f"{r['extra_ratio']:.3f}"] for r in rows]))


def _spread(low_high):
    return "x{:.2f}-{:.2f}".format(*low_high)


def run_models(args, title, cfgs, params="params"):
    """Benchmarks ``cfgs`` (the first is the baseline) and prints one row each; ``params`` is
    the parameter count shown: "params" (the detector's) or "backbone_params"."""
    rows = benchmark_models(cfgs, args.image_size, args.batch_size, args.repeats)
    print(f"\n{title}, batch {args.batch_size} x {args.image_size[0]}x{args.image_size[1]} on "
          f"{args.device} (median of {args.repeats}, interleaved); ratios vs {next(iter(cfgs))}; per round = "
          "lowest and highest train-step ratio of one round, the noise of the median (detector steps include "
          "Detectron2's data-dependent proposal sampling and losses); activation memory = bytes saved for "
          "backward by a training forward, parameters excluded")
    print(format_table(
        [title, "train step ms", "ratio", "per round", "inference ms", "ratio", "activation MiB", "ratio",
         params.replace("_", " "), "ratio", "backbone GFLOPs", "ratio"],
        [[name, f"{r['train_ms']:.0f}", f"x{r['train_ms_ratio']:.2f}", _spread(r["train_ms_ratio_spread"]),
          f"{r['infer_ms']:.0f}",
          f"x{r['infer_ms_ratio']:.2f}", f"{r['saved_mib']:.0f}", f"x{r['saved_mib_ratio']:.2f}",
          f"{r[params]:,}", f"x{r[f'{params}_ratio']:.2f}", f"{r['gflops']:.2f}", f"x{r['gflops_ratio']:.2f}"]
         for name, r in rows.items()]))


def _recompute_rows(args, name, cfg_name):
    """The default config and the other RECOMPUTE_LOGITS setting than the device's default."""
    other = not recomputes(None, torch.device(args.device))
    return {name: load_cfg(args, cfg_name),
            f"{name}, RECOMPUTE_LOGITS {other}": load_cfg(args, cfg_name, "MODEL.LIP.RECOMPUTE_LOGITS", other)}


def run_backbones(args):
    """The R50-FPN vs LIP-R50-FPN backbone pair (LIP with both RECOMPUTE_LOGITS settings), in
    float32 and, on CUDA, under float16 autocast; then the dispatched-op counts."""
    vanilla, lip = MODEL_PAIRS["Faster R-CNN"]
    cfgs = {"R50-FPN": load_cfg(args, vanilla), **_recompute_rows(args, "LIP-R50-FPN", lip)}
    height, width = args.backbone_size
    for dtype in [None] + ([torch.float16] if args.device.startswith("cuda") else []):
        rows = benchmark_backbones(cfgs, args.backbone_size, args.batch_size, args.repeats, args.profile, dtype)
        precision = "float32" if dtype is None else f"autocast {str(dtype).split('.')[-1]}"
        print(f"\nBackbone + FPN (Faster R-CNN configs) training forward + backward, {precision}, batch "
              f"{args.batch_size} x {height}x{width} on {_device_name(args.device)} (median of {args.repeats}, "
              "interleaved); ratios vs R50-FPN; per round = lowest and highest time ratio of one round; activation "
              "memory = bytes saved for backward, parameters excluded; GFLOPs = fvcore's forward count (the stem "
              "and res2 are frozen, so training runs no backward through them)")
        peak = "peak_mib" in rows[next(iter(rows))]
        print(format_table(
            ["backbone + FPN", "fwd+bwd ms", "ratio", "per round", "GFLOPs", "ratio", "activation MiB", "ratio",
             *(["peak MiB", "ratio"] if peak else []), "params", "ratio"],
            [[name, f"{r['ms']:.1f}", f"x{r['ms_ratio']:.2f}", _spread(r["ms_ratio_spread"]), f"{r['gflops']:.1f}",
              f"x{r['gflops_ratio']:.2f}", f"{r['saved_mib']:.0f}", f"x{r['saved_mib_ratio']:.2f}",
              *([f"{r['peak_mib']:.0f}", f"x{r['peak_mib_ratio']:.2f}"] if peak else []), f"{r['params']:,}",
              f"x{r['params_ratio']:.2f}"]
             for name, r in rows.items()]))
        for name, row in rows.items():
            if row["profile"]:
                print(f"\n{name}: top {args.profile} ops by self CPU time, one training step\n{row['profile']}")
    run_op_counts(args)


def run_op_counts(args):
    """Dispatched ops per backbone training step; on the CPU also LIP's count as CUDA launches it
    (impl "triton" in Triton's interpreter, RECOMPUTE_LOGITS as on CUDA)."""
    vanilla, lip = MODEL_PAIRS["Faster R-CNN"]
    cfgs = {"R50-FPN": load_cfg(args, vanilla), "LIP-R50-FPN": load_cfg(args, lip)}
    interpret = not args.device.startswith("cuda") and triton is not None
    if interpret:
        cuda_recompute = recomputes(None, torch.device("cuda"))
        cfgs["LIP-R50-FPN as on CUDA (Triton, interpreted)"] = load_cfg(
            args, lip, "MODEL.LIP.IMPL", "triton", "MODEL.LIP.RECOMPUTE_LOGITS", cuda_recompute)
    with mock.patch.dict(os.environ, {"TRITON_INTERPRET": "1"} if interpret else {}):
        counts = count_dispatched_ops(cfgs)
    base = counts["R50-FPN"][0]
    print(f"\nOps launched by one backbone + FPN training step (2 x 3 x 64 x 64, {args.device}): every "
          "dispatched ATen op plus every Triton kernel launch (lip2d's impls run as plain autograd nodes, so "
          "nothing is hidden inside a custom op)")
    print(format_table(["backbone + FPN", "ops", "ratio", "most frequent"],
                       [[name, total, f"x{total / base:.2f}",
                         ", ".join(f"{op.split('.')[-1]} {n}" for op, n in counter.most_common(4))]
                        for name, (total, counter) in counts.items()]))


def run_detector_pairs(args):
    for detector, (vanilla, lip) in MODEL_PAIRS.items():
        run_models(args, detector, {f"{detector} R50-FPN": load_cfg(args, vanilla),
                                    **_recompute_rows(args, f"{detector} LIP-R50-FPN", lip)})


def run_poolings(args):
    cfgs = pooling_cfgs(functools.partial(load_cfg, args), args.pooling)
    run_models(args, "Faster R-CNN, MODEL.LIP.POOLING", cfgs, params="backbone_params")


@reports_input_errors
def main(argv=None):
    args = parse_args(argv)
    kept = not args.default_malloc and keep_freed_memory()
    print(f"CPU memory: {'freed memory kept for reuse' if kept else 'default malloc'}")
    if args.amp_check:
        cfg = load_cfg(args, MODEL_PAIRS["Faster R-CNN"][1])
        try:
            losses = amp_check(cfg, args.amp_check, args.image_size, args.batch_size)
        except FloatingPointError as exc:
            print(f"amp check failed: {exc}", file=sys.stderr)
            return 1
        print(f"amp check: {len(losses)} iterations of LIP-R50-FPN Faster R-CNN under autocast on "
              f"{args.device}, all losses finite (first {losses[0]:.3f}, last {losses[-1]:.3f}, "
              f"max {max(losses):.3f})")
        return 0
    if args.backbones_only:
        run_backbones(args)
        return 0
    if not args.skip_op:
        run_op(args)
    if not (args.skip_models or args.skip_backbones):
        run_backbones(args)
    if args.pooling:
        run_poolings(args)
    elif not args.skip_models:
        run_detector_pairs(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
