"""Sample photos for the demo: the CC0 / public-domain images scikit-image ships (no download)."""
import os

__all__ = ["SAMPLE_PHOTOS", "sample_image_paths"]

SAMPLE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")


def sample_image_paths():
    """Paths of :data:`SAMPLE_PHOTOS` inside the installed scikit-image.

    Raises:
        ImportError: scikit-image is not installed (``pip install scikit-image``).
    """
    try:
        import skimage
    except ImportError:
        raise ImportError("--samples needs scikit-image: pip install scikit-image") from None
    folder = os.path.join(os.path.dirname(skimage.__file__), "data")
    return [os.path.join(folder, name) for name in SAMPLE_PHOTOS]
