# make train   install what is missing, train + evaluate LIP Faster R-CNN on the built-in data (CPU)
# make test    install what is missing, run the test suite
PYTHON ?= python3
DETECTRON2_SRC ?= git+https://github.com/facebookresearch/detectron2.git

QUICK_LIP = configs/quick/faster_rcnn_lip_r18_shapes.yaml
QUICK_VANILLA = configs/quick/faster_rcnn_r18_shapes.yaml
QUICK_RESULTS = inference/lip_shapes_val/coco_instances_results.json

.PHONY: setup test train train-vanilla compare demo

setup:
	@$(PYTHON) -c "import torch, torchvision.ops, pycocotools, fvcore, cv2, pytest, skimage, matplotlib, tqdm, tabulate" 2>/dev/null \
	  || $(PYTHON) -m pip install -r requirements.txt
	@$(PYTHON) -c "import detectron2" 2>/dev/null \
	  || $(PYTHON) -m pip install --no-build-isolation '$(DETECTRON2_SRC)'
	@# -I: ask the installed lip_det, not the one in the current directory
	@$(PYTHON) -I -c "import lip_det, os, sys; sys.exit(os.path.dirname(lip_det.__path__[0]) != sys.argv[1])" "$(CURDIR)" 2>/dev/null \
	  || $(PYTHON) -m pip install -q --no-deps --no-build-isolation -e .

test: setup
	$(PYTHON) -m pytest -q tests

# Train + evaluate LIP Faster R-CNN on the built-in LIP-Shapes data (CPU, from scratch),
# then print AP by object size and where the chart is.
train: setup
	$(PYTHON) tools/train_net.py --config-file $(QUICK_LIP)
	$(PYTHON) tools/ap_by_size.py --dataset lip_shapes_val --label LIP \
	  --results output/quick/faster_rcnn_lip_r18_shapes/$(QUICK_RESULTS) --output-dir output/quick/ap_by_size_lip

# The same for the vanilla ResNet-18 twin.
train-vanilla: setup
	$(PYTHON) tools/train_net.py --config-file $(QUICK_VANILLA)

# LIP and vanilla side by side (trains whichever is missing, one after the other).
compare: setup
	@test -f output/quick/faster_rcnn_lip_r18_shapes/$(QUICK_RESULTS) || $(MAKE) --no-print-directory train
	@test -f output/quick/faster_rcnn_r18_shapes/$(QUICK_RESULTS) || $(MAKE) --no-print-directory train-vanilla
	$(PYTHON) tools/ap_by_size.py --dataset lip_shapes_val \
	  --results output/quick/faster_rcnn_lip_r18_shapes/$(QUICK_RESULTS) --label LIP \
	  --results output/quick/faster_rcnn_r18_shapes/$(QUICK_RESULTS) --label vanilla --output-dir output/quick/ap_by_size_compare

# Detections and LIP importance maps of the trained quick model on a few validation images.
demo: setup
	@test -f output/quick/faster_rcnn_lip_r18_shapes/model_final.pth || $(MAKE) --no-print-directory train
	$(PYTHON) tools/demo.py --config-file $(QUICK_LIP) --show-importance \
	  --input "$$($(PYTHON) -c 'from lip_det.data.shapes import ensure_shapes_split; print(ensure_shapes_split("lip_shapes_val")[1])')/00000[0-3].png" \
	  --output output/quick/demo MODEL.WEIGHTS output/quick/faster_rcnn_lip_r18_shapes/model_final.pth
