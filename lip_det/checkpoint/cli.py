"""The command line shared by ``tools/convert_*_to_d2.py``."""
import argparse
import sys

from .errors import CheckpointError

__all__ = ["converter_main"]


def converter_main(convert, description, argv=None):
    """``convert(source, output)`` from the command line; errors print one line, exit 2."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("source", help="ImageNet checkpoint (.pth / .pth.tar / .pkl)")
    parser.add_argument("output", help="Detectron2 checkpoint to write (.pkl, or .pth)")
    args = parser.parse_args(argv)
    try:
        result = convert(args.source, args.output)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0
