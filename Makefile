# Usage: make test   (installs whatever is missing, then runs the suite)
PYTHON ?= python3
DETECTRON2_SRC ?= git+https://github.com/facebookresearch/detectron2.git

.PHONY: setup test

setup:
	@$(PYTHON) -c "import torch, torchvision.ops, pycocotools, fvcore, cv2, pytest, skimage" 2>/dev/null \
	  || $(PYTHON) -m pip install -r requirements.txt
	@$(PYTHON) -c "import detectron2" 2>/dev/null \
	  || $(PYTHON) -m pip install --no-build-isolation '$(DETECTRON2_SRC)'
	@# -I: ask the installed lip_det, not the one in the current directory
	@$(PYTHON) -I -c "import lip_det, os, sys; sys.exit(os.path.dirname(lip_det.__path__[0]) != sys.argv[1])" "$(CURDIR)" 2>/dev/null \
	  || $(PYTHON) -m pip install -q --no-deps --no-build-isolation -e .

test: setup
	$(PYTHON) -m pytest -q tests
