"""Gate, logit modules and the LIP module at initialisation."""
import pytest
import torch
import torch.nn.functional as F

from lip_det.layers import LIP, ConvLogit, DownsampleSpec, SharedLogitTrunk, SoftGate, get_logit_norm


def test_gate_bounds_logits():
    gate = SoftGate(12.0)
    out = gate(torch.tensor([-1e4, 0.0, 1e4]))
    torch.testing.assert_close(out, torch.tensor([0.0, 6.0, 12.0]))


@pytest.mark.parametrize("norm", ["IN", "GN", ""])
@pytest.mark.parametrize("kernel_size", [1, 3])
def test_conv_logit_starts_flat_at_half_coeff(norm, kernel_size):
    logit = ConvLogit(64, 32, kernel_size, norm=norm, coeff=10.0)
    out = logit(torch.randn(2, 64, 9, 7))
    assert out.shape == (2, 32, 9, 7)
    torch.testing.assert_close(out, torch.full_like(out, 5.0))


def test_shared_trunk_shape_and_nonzero_init():
    trunk = SharedLogitTrunk(256, width=128)
    out = trunk(torch.randn(2, 256, 10, 12))
    assert out.shape == (2, 128, 10, 12)
    convs = [m for m in trunk.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 and all(conv.weight.std() > 0 for conv in convs)  # MSRA init, unlike the zero heads
    assert out.std() > 0


@pytest.mark.parametrize("module", ["bottleneck", "projection"])
def test_zero_initialised_lip_is_average_pooling(module):
    spec = DownsampleSpec(logit_module=module)
    lip = spec.branch_pool(16)
    x = torch.randn(2, 16, 13, 10)
    trunk = spec.logit_trunk(16)
    shared = trunk(x) if trunk is not None else None
    torch.testing.assert_close(
        lip(x, shared), F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), rtol=1e-5, atol=1e-5
    )


def test_stem_lip_is_average_pooling_at_init():
    lip = DownsampleSpec().single_pool(64)
    assert isinstance(lip, LIP) and isinstance(lip.logit, ConvLogit)
    x = torch.randn(1, 64, 17, 17)
    torch.testing.assert_close(
        lip(x), F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), rtol=1e-5, atol=1e-5
    )


def test_unknown_norm_is_rejected():
    with pytest.raises(ValueError, match="'BN' is not one of"):
        get_logit_norm("BN", 8)
