"""``LIPCheckpointer``: Detectron2's checkpointer, exact and quiet for ImageNet weights."""
import torch
from detectron2.checkpoint import DetectionCheckpointer

from .errors import CheckpointError
from .files import unreadable, unwrap_state_dict
from .loading import match_trunk_weights
from .names import detect_layout

__all__ = ["LIPCheckpointer"]


class LIPCheckpointer(DetectionCheckpointer):
    """A :class:`DetectionCheckpointer` for LIP (and vanilla) ResNet detectors.

    Checkpoints of a whole detector (training, resume) load as usual. ResNet weights (official LIP-ResNet .pth, torchvision .pth, MSRA .pkl or a
    file from ``tools/convert_*_to_d2.py``) are placed into the ResNet trunk by exact
    names: the log lists which trunk tensors are new and why, instead of Detectron2's
    wall of missing-key warnings. ``.pth`` files are read with
    ``torch.load(weights_only=True)``. Unreadable or mismatching files raise a one-line
    :class:`CheckpointError`. ``self.trunk_load`` keeps the last :class:`TrunkLoad`.
    """

    trunk_load = None

    def _load_file(self, filename):
        try:
            return super()._load_file(filename)
        except CheckpointError:
            raise
        except Exception as exc:  # truncated zip / pickle, or not a checkpoint at all
            raise unreadable(filename, exc) from exc

    def _torch_load(self, f):
        return torch.load(f, map_location="cpu", weights_only=True)

    def _load_model(self, checkpoint):
        model_state = self.model.state_dict()
        try:
            state = unwrap_state_dict(checkpoint["model"])
        except CheckpointError as exc:
            raise CheckpointError(f"weights {self._source()}: {exc}") from None
        self.trunk_load = None
        author = checkpoint.get("__author__")
        if author == "Caffe2" or detect_layout(state) is not None:  # ResNet trunk weights
            self.trunk_load = match_trunk_weights(model_state, state, self._source(), author)
            self.logger.info(self.trunk_load.summary())
            checkpoint["model"] = self.trunk_load.state_dict
            checkpoint["matching_heuristics"] = False
        incompatible = super()._load_model(checkpoint)
        if self.trunk_load is not None:  # explained in the summary above
            explained = {self.trunk_load.prefix + k for k in self.trunk_load.new}
            explained.update(self.trunk_load.outside)
            incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if k not in explained]
        return incompatible

    def _source(self):
        url = self._parsed_url_during_load
        return url.geturl() if url is not None else "(weights)"
