"""What LIP layers do while a model is traced for export (TorchScript, ONNX) or FLOP counting."""
import torch

from .checks import LIPConfigError

__all__ = ["is_exporting", "check_exportable"]


def is_exporting():
    """Whether the model is being traced by ``torch.jit.trace`` or ``torch.export`` (and so by either
    ONNX exporter): LIP then runs plain ops, since its custom ops and Triton kernels have no ONNX or
    TorchScript form, and fvcore cannot count them."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


def check_exportable(pooling, training):
    """Raises :class:`LIPConfigError` when ``pooling``, an operator that samples at random in training,
    is traced for export in training mode: the exported graph would freeze one random draw."""
    if training and is_exporting():
        raise LIPConfigError(
            f"MODEL.LIP.POOLING = {pooling!r} samples at random in training mode and cannot be exported; "
            "call model.eval() before exporting (its eval form is deterministic)"
        )
