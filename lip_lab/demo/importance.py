"""What each pooling layer weighs, averaged over channels and drawn over the image.

Every operator with importance weights has a map: LIP (``exp(logit)``), SoftPool
(``exp(x)``), Lp (``|x|^p``) and stochastic pooling (``relu(x)``, proportional to its
sampling probabilities); see each module's ``importance``. Max, avg, min, sum, S3Pool and
BlurPool weigh positions by fixed rules and have none.
"""
import math
import re

import cv2
import numpy as np
import torch

from lip_det.layers import POOLS_WITH_IMPORTANCE

__all__ = ["ImportanceRecorder", "render_importance_grid"]

MIN_PANEL_WIDTH = 320
"""Small images are enlarged to this width so the captions fit."""


def _panel_title(module_name):
    """'backbone.bottom_up.res3.0.shortcut_lip' -> 'res3 shortcut'; '...stem.lip' -> 'stem'."""
    match = re.search(r"(stem|res\d)(?:\.\d+)?\.(shortcut_)?lip$", module_name)
    if match:
        return match.group(1) + (" shortcut" if match.group(2) else "")
    match = re.search(r"(p\d)_lip$", module_name)
    return f"FPN {match.group(1)}" if match else module_name


class ImportanceRecorder:
    """Records the importance map of every weighted pooling module of ``model`` in one forward.

    Use as a context manager around ``predictor(image)``; ``maps`` then holds
    ``{title: (H_l, W_l) float array}``, the channel mean of the module's importance
    weights (``exp(logit)`` for LIP) for the first image, and ``input_size`` the padded
    (H, W) the backbone saw. ``lips`` lists the recorded modules (empty for a vanilla
    backbone or a parameter-free operator without weights).
    """

    def __init__(self, model):
        self.lips = [(_panel_title(n), m) for n, m in model.named_modules() if isinstance(m, POOLS_WITH_IMPORTANCE)]
        self.backbone = getattr(model, "backbone", model)
        self.maps, self.input_size, self._handles = {}, None, []

    def __enter__(self):
        self.maps, self.input_size = {}, None
        self._handles.append(self.backbone.register_forward_pre_hook(self._record_input))
        for title, pool in self.lips:
            self._handles.append(pool.register_forward_hook(self._recorder(title)))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _record_input(self, module, args):
        self.input_size = tuple(args[0].shape[-2:])

    def _recorder(self, title):
        def hook(module, args, output):
            with torch.no_grad():
                self.maps[title] = module.importance(*args)[0].float().mean(dim=0).cpu().numpy()

        return hook


def _heat_panel(image_rgb, heat, title, valid_fraction):
    """Blends one normalised importance map over the image, with a caption bar."""
    h, w = image_rgb.shape[:2]
    rows = max(1, math.ceil(heat.shape[0] * valid_fraction[0]))
    cols = max(1, math.ceil(heat.shape[1] * valid_fraction[1]))
    heat = heat[:rows, :cols]
    low, high = float(heat.min()), float(heat.max())
    if high - low <= 1e-6 * max(high, 1.0):
        caption, norm = f"{title}: uniform (= average pooling)", np.zeros_like(heat)
    else:
        spread = f"max/min {high / low:.3g}" if low > 0 else "min 0"
        caption, norm = f"{title}: {spread}", (heat - low) / (high - low)
    norm = cv2.resize(norm.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
    colored = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[:, :, ::-1]
    panel = (0.45 * image_rgb + 0.55 * colored).astype(np.uint8)
    return _with_caption(panel, caption)


def _with_caption(panel, caption):
    bar = np.full((28, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, caption, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, panel], axis=0)


def render_importance_grid(image_rgb, maps, input_size, resized_size, columns=4, panel_width=480):
    """A grid: the image, then one panel per weighted pooling layer, each map cropped to the real image.

    Args:
        image_rgb: (H, W, 3) uint8, the original image (shown ``MIN_PANEL_WIDTH`` to
            ``panel_width`` pixels wide).
        maps: {title: (H_l, W_l) array} from :class:`ImportanceRecorder`.
        input_size: padded (H, W) the backbone saw; resized_size: (H, W) before padding.
    Returns:
        (rows * (h + 28), columns * w, 3) uint8 RGB grid, (h, w) the panel size.
    """
    width = min(max(image_rgb.shape[1], MIN_PANEL_WIDTH), panel_width)
    if width != image_rgb.shape[1]:
        height = round(image_rgb.shape[0] * width / image_rgb.shape[1])
        shrink = width < image_rgb.shape[1]
        image_rgb = cv2.resize(image_rgb, (width, height),
                               interpolation=cv2.INTER_AREA if shrink else cv2.INTER_NEAREST)
    valid = (resized_size[0] / input_size[0], resized_size[1] / input_size[1])
    panels = [_with_caption(image_rgb.copy(), "input")]
    panels += [_heat_panel(image_rgb, heat, title, valid) for title, heat in maps.items()]
    blank = np.full_like(panels[0], 255)
    panels += [blank] * (-len(panels) % columns)
    rows = [np.concatenate(panels[i : i + columns], axis=1) for i in range(0, len(panels), columns)]
    return np.concatenate(rows, axis=0)
