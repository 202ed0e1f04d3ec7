"""lip2d: the paper's formula, its output size, and its two limits (avg and max pooling)."""
import pytest
import torch
import torch.nn.functional as F

from lip_det.layers import lip2d, lip2d_reference


@pytest.mark.parametrize("size", [(1, 1), (1, 7), (2, 2), (5, 5), (7, 8), (13, 16), (33, 31)])
@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (2, 2, 0), (3, 1, 1), (5, 3, 2)])
def test_output_size_matches_avg_pool(size, kernel, stride, padding):
    x = torch.randn(2, 3, *size)
    if min(size) + 2 * padding < kernel:  # avg_pool2d itself has no output here
        with pytest.raises(ValueError, match="too small"):
            lip2d(x, torch.rand_like(x), kernel, stride, padding)
        return
    out = lip2d(x, torch.rand_like(x), kernel, stride, padding)
    assert out.shape == F.avg_pool2d(x, kernel, stride, padding).shape


@pytest.mark.parametrize("size", [(1, 1), (6, 6), (7, 9), (32, 32)])
def test_flat_logit_is_average_pooling_over_valid_positions(size):
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    for level in (0.0, 6.0, 12.0):
        out = lip2d(x, torch.full_like(x, level))
        expected = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_large_logit_approaches_max_pooling():
    x = torch.randn(2, 8, 15, 17, dtype=torch.float64)
    sharpness = [1.0, 10.0, 100.0]
    errors = [(lip2d(x, s * x) - F.max_pool2d(x, 3, 2, 1)).abs().max().item() for s in sharpness]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-2  # vs an O(1) gap between max and mean of a window


def test_single_channel_logit_broadcasts_over_channels():
    x = torch.randn(1, 5, 9, 9, dtype=torch.float64)
    logit = torch.randn(1, 1, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(lip2d(x, logit), lip2d(x, logit.expand_as(x)))


def test_gradcheck():
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    logit = torch.randn(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lip2d, (x, logit))


def test_auto_matches_reference():
    x, logit = torch.randn(2, 3, 11, 10), torch.rand(2, 3, 11, 10) * 12
    torch.testing.assert_close(lip2d(x, logit), lip2d_reference(x, logit))


def test_bad_arguments_name_the_problem():
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="unknown impl 'cuda'"):
        lip2d(x, x, impl="cuda")
    with pytest.raises(ValueError, match="4-D"):
        lip2d(x[0], x[0])
    with pytest.raises(ValueError, match=r"must be \(N, C, H, W\) or \(N, 1, H, W\)"):
        lip2d(torch.randn(1, 3, 4, 4), torch.randn(1, 2, 4, 4))
    with pytest.raises(ValueError, match="padding <= kernel // 2"):
        lip2d(x, x, kernel=3, padding=2)
