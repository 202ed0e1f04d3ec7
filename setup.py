"""lip_det, the LIP backbones for Detectron2 (the plugin), and lip_lab, the tools around it.

    pip install -e .          # the plugin: torch, Detectron2 (from source) and fvcore
    pip install -e '.[lab]'   # with the lab: training and evaluation tools, datasets, studies, demo
"""
from setuptools import find_packages, setup

LAB = [  # what lip_lab imports beyond the plugin's needs
    "pycocotools>=2.0.2",
    "opencv-python-headless",
    "Pillow",
    "matplotlib",
    "tqdm",
    "tabulate",
    "scipy",  # study statistics
    "pyyaml",
    "scikit-image",  # sample photos for the demo
    "onnx", "onnxscript", "onnxruntime",  # export: both ONNX exporters, and running the files back
    "setuptools>=70.1,<81",  # Detectron2's model_zoo (the LazyConfigs) imports pkg_resources
]

setup(
    name="lip_det",
    version="0.1.0",
    description="LIP (Local Importance-based Pooling, ICCV 2019) backbones for Detectron2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=("lip_det", "lip_det.*", "lip_lab", "lip_lab.*")),
    python_requires=">=3.10",
    # Detectron2 is not on PyPI: install it from source first (see README / requirements.txt).
    install_requires=[
        "torch>=2.6",  # torch.load defaults to weights_only=True
        "fvcore",
    ],
    extras_require={"lab": LAB, "test": LAB + ["pytest"]},
)
