"""lip_det: LIP (Local Importance-based Pooling) backbones for Detectron2."""
from setuptools import find_packages, setup

setup(
    name="lip_det",
    version="0.1.0",
    description="LIP (Local Importance-based Pooling, ICCV 2019) backbones for Detectron2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(exclude=("tests", "tests.*")),
    python_requires=">=3.9",
    # Detectron2 is not on PyPI: install it from source first (see README / requirements.txt).
    install_requires=[
        "torch>=2.6",  # torch.load defaults to weights_only=True
        "torchvision",
        "fvcore",
        "pycocotools>=2.0.2",
        "opencv-python-headless",
        "matplotlib",
        "tqdm",
        "tabulate",
        "scipy",  # study statistics
        "pyyaml",
        "scikit-image",  # sample photos for the demo
        "setuptools>=70.1,<81",
    ],
    extras_require={"test": ["pytest"]},
)
