"""Finding and reading the demo's inputs: files, globs and folders of images."""
import glob
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_EXTENSIONS", "UnreadableImage", "expand_inputs", "read_image_rgb"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class UnreadableImage(Exception):
    """An input that cannot be decoded as an image; the message says why."""


def expand_inputs(patterns):
    """Expands files, globs and folders (their images, sorted) into paths.

    Returns:
        (paths, problems): the paths found, in order and without repeats, and one line per
        pattern that matched nothing usable.
    """
    paths, problems = [], []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = sorted(
                os.path.join(pattern, name)
                for name in os.listdir(pattern)
                if name.lower().endswith(IMAGE_EXTENSIONS)
            )
            if not found:
                problems.append(
                    f"{pattern}: folder has no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
        elif os.path.isfile(pattern):
            found = [pattern]
        else:
            found = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
            if not found:
                problems.append(f"{pattern}: no such file, folder or matching glob")
        paths.extend(p for p in found if p not in paths)
    return paths, problems


def read_image_rgb(path):
    """Reads any PIL-readable image as RGB, EXIF orientation applied.

    Returns:
        (image, note): uint8 array (H, W, 3) in RGB order, and a note when the file had to
        be converted (grayscale, alpha, palette, 16-bit), else None.
    Raises:
        UnreadableImage: the file is missing, corrupt or not an image.
    """
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
    except FileNotFoundError:
        raise UnreadableImage(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(f"{path}: cannot decode image ({exc.__class__.__name__}); is it corrupt?") from None
    note = None
    if im.mode != "RGB":
        kind = {"L": "grayscale", "LA": "grayscale+alpha", "RGBA": "RGBA", "P": "palette",
                "I;16": "16-bit grayscale", "I": "32-bit grayscale", "CMYK": "CMYK"}.get(im.mode, im.mode)
        note = f"{path}: {kind} image converted to RGB"
        if im.mode.startswith("I"):  # 16/32-bit: scale to 8 bits instead of clipping
            array = np.asarray(im, dtype=np.float64)
            array = (255 * (array - array.min()) / max(np.ptp(array), 1)).astype(np.uint8)
            im = Image.fromarray(array)
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im)), note
