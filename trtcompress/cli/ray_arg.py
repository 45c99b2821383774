"""``--ray [ADDRESS]``: calibrate with Ray tasks (quantize, compress)."""
from __future__ import annotations

import argparse

from ..distributed import LOCAL

RAY_HELP = (f"collect calibration statistics with Ray tasks on the cluster at ADDRESS (auto, HOST:6379, ray://HOST:10001; "
            f"none: the cluster RAY_ADDRESS names, else one on this machine); same result as without; needs trtcompress[ray]")


def add_ray_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The flag for a config field ``ray`` (``--ray`` alone: ``local``)."""
    p.add_argument("--ray", nargs="?", const=LOCAL, default=None, metavar="ADDRESS", help=RAY_HELP)
