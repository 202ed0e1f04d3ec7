"""How far an exported model's outputs are from PyTorch's."""

__all__ = ["compare_outputs", "format_comparison"]


def compare_outputs(reference, exported, score_threshold=0.5):
    """Largest differences between two ``{output name: tensor}`` of the same model on one image.

    Returns:
        ``{name: (max abs difference, that / max abs reference value)}`` for every output both have
        with the same shape (None for a shape mismatch), and, for detectors, ``"detections"``:
        (detections with ``scores >= score_threshold`` in reference, in exported, class lists equal).
    """
    report = {}
    for name, ref in reference.items():
        got = exported.get(name)
        if got is None or tuple(got.shape) != tuple(ref.shape):
            report[name] = None
            continue
        ref, got = ref.detach().double().cpu(), got.detach().double().cpu()
        error = (got - ref).abs().max().item() if ref.numel() else 0.0
        scale = ref.abs().max().item() if ref.numel() else 0.0
        report[name] = (error, error / scale if scale else error)
    if "scores" in reference and "scores" in exported:
        kept = [outputs["scores"] >= score_threshold for outputs in (reference, exported)]
        classes = [outputs["pred_classes"][keep].tolist() if "pred_classes" in outputs else []
                   for outputs, keep in zip((reference, exported), kept)]
        report["detections"] = (int(kept[0].sum()), int(kept[1].sum()), classes[0] == classes[1])
    return report


def format_comparison(report):
    """One line per output: ``name: max |diff| (relative)``; shape mismatches and detections said in words."""
    lines = []
    for name, value in report.items():
        if name == "detections":
            ref, got, same = value
            lines.append(f"detections >= threshold: {ref} (PyTorch) vs {got} (exported), classes "
                         f"{'identical' if same else 'DIFFER'}")
        elif value is None:
            lines.append(f"{name}: shape differs from PyTorch's")
        else:
            lines.append(f"{name}: max |diff| {value[0]:.3g} ({value[1]:.3g} relative)")
    return lines
