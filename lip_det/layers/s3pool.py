"""S3Pool: stochastic spatial sampling (Zhai et al., CVPR 2017, arXiv 1611.05138).

Pooling seen as two steps, a window with stride 1 and a downsampling: S3Pool keeps the
paper's 2x2/1 max and replaces the regular stride-2 subsampling by a random one while
training. Each dimension is cut into grids of ``g`` rows (columns); each grid keeps a
random, sorted choice of ``g / 2`` of them. Rows and columns are drawn once per forward
for the whole batch and every channel, as in the authors' code, from torch's default (CPU)
generator, so ``SEED`` reproduces them on any device. In eval the subsampling is regular
(rows and columns 0, 2, 4, ...); the authors' released code averages 2x2 windows there
instead, the paper and this module subsample.

Mapping onto LIP's 3x3/2 slot: the 2x2/1 max keeps H x W (:func:`max_pool2x2_stride1`),
a last grid with ``r < g`` rows keeps ``ceil(r / 2)`` of them, so training and eval both
give ``ceil(H / 2) x ceil(W / 2)`` = ``F.avg_pool2d(x, 3, 2, 1)``'s size; in eval S3Pool is
2x2/2 max pooling (ceil mode). ``g`` must be even; a map smaller than ``g`` is one grid.

In a residual block both branches must keep the same rows and columns, or their sum would
mix positions: the block draws one :class:`S3Sample` per forward (:class:`S3Sampler`) and
passes it to both pools.
"""
from typing import NamedTuple

import torch
from torch import nn

from .checks import check_value, is_int
from .tracing import check_exportable
from .window_pool import ParameterFreePool, max_pool2x2_stride1

__all__ = ["S3Sample", "check_s3pool_grid", "s3pool_sample", "s3_pool2d", "S3Sampler", "S3Pool"]


class S3Sample(NamedTuple):
    """Kept rows (ceil(H/2),) and columns (ceil(W/2),): sorted int64 indices on the CPU."""

    rows: torch.Tensor
    cols: torch.Tensor


def check_s3pool_grid(key, grid):
    """S3Pool's grid: an even integer >= 2."""
    check_value(key, grid, is_int(grid) and grid >= 2 and grid % 2 == 0,
                "use an even integer >= 2 (each g x g grid keeps g/2 rows and columns)")


def _keep_in_grids(size, grid):
    """Sorted random indices of ``range(size)``: ``grid // 2`` per full grid, ceil(r/2) in a last one of r."""
    num_grids = -(-size // grid)
    last = size - (num_grids - 1) * grid
    keys = torch.rand(num_grids, grid)
    keys[-1, last:] = 2.0  # past the end: ranked after every real row
    keep = torch.full((num_grids, 1), grid // 2)
    keep[-1] = (last + 1) // 2
    chosen = keys.argsort(1).argsort(1) < keep
    return chosen.flatten().nonzero().squeeze(1)


def s3pool_sample(height, width, grid=4):
    """Draws the rows and columns S3Pool keeps from an ``height`` x ``width`` map."""
    return S3Sample(_keep_in_grids(height, grid), _keep_in_grids(width, grid))


def s3_pool2d(x, sample=None):
    """S3Pool of ``x``: 2x2/1 max, then the rows / columns of ``sample`` (regular when None).

    Shapes: (N, C, H, W) -> (N, C, ceil(H/2), ceil(W/2)).
    """
    peak = max_pool2x2_stride1(x)
    if sample is None:
        return peak[:, :, ::2, ::2]
    rows, cols = (index.to(x.device, non_blocking=True) for index in sample)
    return peak.index_select(2, rows).index_select(3, cols)


class S3Sampler(nn.Module):
    """``forward(x)``: a fresh :class:`S3Sample` for x's size while training, None in eval."""

    def __init__(self, grid=4):
        super().__init__()
        check_s3pool_grid("grid", grid)
        self.grid = grid

    def forward(self, x):
        if not self.training:
            return None
        check_exportable("s3pool", self.training)
        return s3pool_sample(x.shape[-2], x.shape[-1], self.grid)

    def extra_repr(self):
        return f"grid={self.grid}"


class S3Pool(ParameterFreePool):
    """S3Pool at a LIP slot; ``forward(x, sample=None)`` draws its own sample when none is given."""

    def __init__(self, grid=4):
        super().__init__()
        self.sampler = S3Sampler(grid)

    @classmethod
    def from_spec(cls, spec, window):
        """Any stride-2 slot: the 2x2/1 max and the sampling take no window (ceil(H/2) rows)."""
        return cls(spec.s3pool_grid)

    def forward(self, x, sample=None):
        return s3_pool2d(x, self.sampler(x) if sample is None else sample)
