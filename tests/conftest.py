"""The suite needs a working Detectron2: without it, fail loudly instead of skipping. Shared fixtures."""
import pytest


def pytest_configure(config):
    try:
        import detectron2  # noqa: F401
        import torchvision.ops  # noqa: F401
    except Exception as exc:  # ImportError, or torchvision ops that cannot load
        raise pytest.UsageError(
            f"Detectron2 is not importable ({exc}). Install it from source: "
            "pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git' "
            "(or run `make test`, which installs what is missing)"
        )


@pytest.fixture
def triton_interpreter(monkeypatch):
    """Triton kernels run on CPU tensors, in its interpreter."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def seeded_torch():
    """Every test starts from the same global RNG state, so unseeded draws repeat from run to run."""
    import torch

    torch.manual_seed(0)
