"""Side-by-side speed and memory measurements of lip2d and of LIP vs vanilla detectors.

Every comparison is measured in one run with the contenders interleaved (A, B, A, B, ...)
and summarised by medians, so a loaded machine slows all of them alike.
"""
import math
import statistics
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler, build_optimizer
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from tqdm import tqdm

from ..layers import lip2d
from ..layers.lip2d_triton import triton_usable
from .complexity import count_gflops, count_parameters

__all__ = [
    "SavedTensors",
    "interleaved_medians",
    "op_contenders",
    "benchmark_op",
    "synthetic_batch",
    "benchmark_models",
    "amp_check",
    "num_classes",
    "format_table",
]

MiB = 2.0**20


class SavedTensors:
    """Counts the bytes autograd keeps for backward while the context is open.

    Storages are counted once however many saved tensors view them. ``excluded`` storages
    (e.g. an op's inputs and output, which the surrounding network holds anyway) are
    reported apart: ``total`` counts everything, ``extra`` only what is not excluded.
    """

    def __init__(self, excluded=()):
        self._excluded = {self._key(t) for t in excluded}
        self._seen = {}

    @staticmethod
    def _key(t):
        return (t.device.type, t.untyped_storage().data_ptr())

    def _pack(self, t):
        self._seen[self._key(t)] = t.untyped_storage().nbytes()
        return t

    @contextmanager
    def recording(self):
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
            yield self

    def exclude(self, *tensors):
        self._excluded.update(self._key(t) for t in tensors)

    @property
    def total(self):
        return sum(self._seen.values())

    @property
    def extra(self):
        return sum(n for k, n in self._seen.items() if k not in self._excluded)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(tasks, repeats, warmup=1, desc=None):
    """Median seconds of each zero-argument callable in ``tasks`` (name -> fn), interleaved."""
    times = {name: [] for name in tasks}
    for i in tqdm(range(warmup + repeats), desc=desc, leave=False, disable=desc is None):
        for name, fn in tasks.items():
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def op_contenders(device):
    """name -> fn(x, logit) for the op benchmark: LIP impls, then fixed pooling for scale."""
    impls = ["reference", "fused"] + (["triton"] if device.type == "cuda" and triton_usable(
        torch.empty(0, device=device)) else [])
    contenders = {f"lip2d {impl}": (lambda x, l, impl=impl: lip2d(x, l, impl=impl)) for impl in impls}
    contenders["max_pool2d 3x3/2"] = lambda x, l: F.max_pool2d(x, 3, 2, 1)
    contenders["avg_pool2d 3x3/2"] = lambda x, l: F.avg_pool2d(x, 3, 2, 1)
    return contenders


def benchmark_op(shape, device="cpu", dtype=torch.float32, repeats=5):
    """Forward+backward time and memory saved for backward of each contender on ``shape``.

    Returns:
        list of dict(name, ms, speedup, saved_mib, extra_mib, extra_ratio); ratios are
        against "lip2d reference" measured in the same run.
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
    rows = []
    for name, fn in contenders.items():
        saved = SavedTensors(excluded=(x, logit))
        with saved.recording():
            out = fn(x, logit)
        saved.exclude(out)
        rows.append({"name": name, "ms": 1e3 * seconds[name], "saved_mib": saved.total / MiB,
                     "extra_mib": saved.extra / MiB})
        del out
    ref = rows[0]
    for row in rows:
        row["speedup"] = ref["ms"] / row["ms"]
        row["extra_ratio"] = row["extra_mib"] / ref["extra_mib"]
    return rows


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


def _training_parts(cfg, batch_size):
    """(model, optimizer, lr scheduler) as ``cfg`` trains them, lr scaled linearly to batch_size."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.SOLVER.BASE_LR *= batch_size / cfg.SOLVER.IMS_PER_BATCH
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optimizer = build_optimizer(cfg, model)
    return model, optimizer, build_lr_scheduler(cfg, optimizer)


def _train_step(model, optimizer, scheduler, batch):
    def run():
        losses = sum(model(batch).values())
        optimizer.zero_grad(set_to_none=True)
        losses.backward()
        optimizer.step()
        scheduler.step()
    return run


def _inference(model, batch):
    def run():
        with torch.no_grad():
            model(batch)
    return run


def _activation_bytes(model, batch):
    """Bytes saved for backward by one training forward, parameters excluded."""
    saved = SavedTensors(excluded=list(model.parameters()))
    with saved.recording():
        losses = sum(model(batch).values())
    del losses
    return saved.extra


def num_classes(cfg):
    """Number of classes of the detector ``cfg`` builds."""
    if cfg.MODEL.META_ARCHITECTURE == "RetinaNet":
        return cfg.MODEL.RETINANET.NUM_CLASSES
    return cfg.MODEL.ROI_HEADS.NUM_CLASSES


def benchmark_models(cfgs, image_size=(256, 320), batch_size=2, repeats=3):
    """Train-step / inference time, activation memory, params and GFLOPs of each model.

    Activation memory is what one training forward saves for backward (parameters
    excluded), the part of training memory that the backbone changes; GFLOPs are fvcore's
    count for the backbone (with FPN) on the batch's padded images.

    Args:
        cfgs: name -> Detectron2 config; the first one is the baseline for the ratios.
    Returns:
        dict name -> dict(train_ms, infer_ms, saved_mib, params, gflops, and ``*_ratio``
        against the first config for each figure).
    """
    with EventStorage(0):  # Detectron2's training losses log to it
        return _benchmark_models(cfgs, image_size, batch_size, repeats)


def _benchmark_models(cfgs, image_size, batch_size, repeats):
    height, width = image_size
    models, batches, rows = {}, {}, {}
    for name, cfg in cfgs.items():
        models[name] = _training_parts(cfg, batch_size)
        model = models[name][0]
        batches[name] = synthetic_batch(batch_size, height, width, num_classes(cfg))
        images = model.preprocess_image(batches[name]).tensor
        rows[name] = {
            "params": count_parameters(model),
            "gflops": count_gflops(model.backbone.eval(), images),
        }
        model.backbone.train()
        rows[name]["saved_mib"] = _activation_bytes(model, batches[name]) / MiB
    train = interleaved_medians({n: _train_step(*parts, batches[n]) for n, parts in models.items()},
                                repeats, desc="train steps")
    for model, *_ in models.values():
        model.eval()
    infer = interleaved_medians({n: _inference(m, batches[n]) for n, (m, *_) in models.items()},
                                repeats, desc="inference")
    base = next(iter(cfgs))
    for name, row in rows.items():
        row["train_ms"], row["infer_ms"] = 1e3 * train[name], 1e3 * infer[name]
    for name, row in rows.items():
        for key in ("train_ms", "infer_ms", "saved_mib", "params", "gflops"):
            row[f"{key}_ratio"] = row[key] / rows[base][key]
    return rows


def amp_check(cfg, iterations=100, image_size=(256, 320), batch_size=2, dtype=None):
    """Trains ``cfg``'s model under autocast for ``iterations`` and returns the total losses.

    Optimizer and lr schedule (warmup included) are ``cfg``'s, lr scaled to ``batch_size``.

    Autocast runs in bfloat16 on CPU and float16 on CUDA unless ``dtype`` says otherwise.
    Raises:
        FloatingPointError: at the first non-finite loss, naming the iteration.
    """
    device = torch.device(cfg.MODEL.DEVICE)
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.bfloat16)
    model, optimizer, scheduler = _training_parts(cfg, batch_size)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    batch = synthetic_batch(batch_size, *image_size, num_classes(cfg))
    losses = []
    with EventStorage(0):
        for it in tqdm(range(iterations), desc=f"{dtype} autocast training", leave=False):
            losses.append(_amp_step(model, optimizer, scaler, batch, device, dtype, it))
            scheduler.step()
    return losses


def _amp_step(model, optimizer, scaler, batch, device, dtype, it):
    with torch.autocast(device.type, dtype=dtype):
        loss = sum(model(batch).values())
    if not math.isfinite(loss.item()):
        raise FloatingPointError(f"loss is {loss.item()} at iteration {it} under {dtype} autocast")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.item()


def format_table(header, rows):
    """A GitHub-markdown table of ``rows`` (lists of already formatted cells)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)
