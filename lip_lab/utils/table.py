"""The one table format of reports and tools: GitHub markdown (pipe) tables."""
from tabulate import tabulate

__all__ = ["format_table"]


def format_table(headers, rows):
    """A pipe table of ``rows`` (lists of already formatted cells): first column left-aligned,
    the others right-aligned, cells printed as given."""
    align = ("left",) + ("right",) * (len(headers) - 1)
    return tabulate(rows, headers=headers, tablefmt="pipe", colalign=align, disable_numparse=True)
