# make train     trains + evaluates LIP Faster R-CNN on the built-in data (CPU)
# make test      runs the test suite (make test-fast: without training and subprocess tests)
# Both first run `make install`: it prints installed versions against requirements.txt and installs
# what is missing or of another version (printing each pip command), except that an installed torch or
# torchvision is never replaced; Detectron2 comes from DETECTRON2_SRC when missing, and this checkout is
# installed editable with its lab extra (pip install -e '.[lab]': the plugin lip_det and the tools' package
# lip_lab). `make check` only reports.
PYTHON ?= python3
DETECTRON2_SRC ?= git+https://github.com/facebookresearch/detectron2.git
CHECK_ENV = $(PYTHON) tools/check_env.py --detectron2 '$(DETECTRON2_SRC)'

QUICK_LIP = configs/quick/faster_rcnn_lip_r18_shapes.yaml
QUICK_VANILLA = configs/quick/faster_rcnn_r18_shapes.yaml
QUICK_RESULTS = inference/lip_shapes_val/coco_instances_results.json

.PHONY: check install test test-fast train train-vanilla compare demo study study-pooling study-schedule study-schedule-gpu

check:
	$(CHECK_ENV)

install:
	@$(CHECK_ENV) --install

test: install
	$(PYTHON) -m pytest -q tests

test-fast: install
	$(PYTHON) -m pytest -q tests -m "not slow"

# Train + evaluate LIP Faster R-CNN on the built-in LIP-Shapes data (CPU, from scratch),
# then print AP by object size and where the chart is.
train: install
	$(PYTHON) tools/train_net.py --config-file $(QUICK_LIP)
	$(PYTHON) tools/ap_by_size.py --dataset lip_shapes_val --label LIP \
	  --results output/quick/faster_rcnn_lip_r18_shapes/$(QUICK_RESULTS) --output-dir output/quick/ap_by_size_lip

# The same for the vanilla ResNet-18 twin.
train-vanilla: install
	$(PYTHON) tools/train_net.py --config-file $(QUICK_VANILLA)

# LIP and vanilla side by side (trains whichever is missing, one after the other).
compare: install
	@test -f output/quick/faster_rcnn_lip_r18_shapes/$(QUICK_RESULTS) || $(MAKE) --no-print-directory train
	@test -f output/quick/faster_rcnn_r18_shapes/$(QUICK_RESULTS) || $(MAKE) --no-print-directory train-vanilla
	$(PYTHON) tools/ap_by_size.py --dataset lip_shapes_val \
	  --results output/quick/faster_rcnn_lip_r18_shapes/$(QUICK_RESULTS) --label LIP \
	  --results output/quick/faster_rcnn_r18_shapes/$(QUICK_RESULTS) --label vanilla --output-dir output/quick/ap_by_size_compare

# Detections and LIP importance maps of the trained quick model on a few validation images.
demo: install
	@test -f output/quick/faster_rcnn_lip_r18_shapes/model_final.pth || $(MAKE) --no-print-directory train
	$(PYTHON) tools/demo.py --config-file $(QUICK_LIP) --show-importance \
	  --input "$$($(PYTHON) -c 'from lip_lab.data.shapes import ensure_shapes_split; print(ensure_shapes_split("lip_shapes_val")[1])')/00000[0-3].png" \
	  --output output/quick/demo --opts MODEL.WEIGHTS output/quick/faster_rcnn_lip_r18_shapes/model_final.pth

# Multi-seed studies (tools/study.py; one training at a time, one thread each so that AP does not
# depend on the machine's core count; finished runs are skipped, interrupted ones resume).
# LIP (no logit norm), LIP with the official InstanceNorm logits and vanilla R18-FPN, 5 seeds (~75 min on 2 cores).
study: install
	$(PYTHON) tools/study.py --study-file configs/studies/lip_vs_vanilla.yaml --threads 1

# Every MODEL.LIP.POOLING operator against vanilla, 3 seeds each, two trainings at a time; a short
# 200-iteration schedule (~65 min on 2 cores, see the study file).
study-pooling: install
	$(PYTHON) tools/study.py --study-file configs/studies/pooling_family.yaml --threads 1 --jobs 2

# Does LIP's gap close with longer training? vanilla, lip and lip_in at 400 and 1,600 iterations
# (lr steps scaled, warmup fixed: see the study file), 3 seeds, two trainings at a time
# (~3.5 h on 2 cores); sweep table and chart: output/studies/schedule_sweep/sweep.md, sweep_differences.png.
study-schedule: install
	$(PYTHON) tools/study.py --study-file configs/studies/schedule_sweep.yaml --threads 1 --jobs 2

# The same at GPU scale on one GPU: R50-FPN at 384 px, 1x and 5x the quick schedule, LIP vs
# vanilla, 3 seeds, six trainings at once (~10 min on one H200, an estimate: see the study file).
study-schedule-gpu: install
	$(PYTHON) tools/study.py --study-file configs/studies/schedule_sweep_gpu.yaml --threads 1 --jobs 6 MODEL.DEVICE cuda
