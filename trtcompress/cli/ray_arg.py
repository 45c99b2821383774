"""``--ray [ADDRESS]``: calibrate with Ray tasks (quantize, compress), fine-tune on Ray Train (finetune, compress)."""
from __future__ import annotations

import argparse

from ..distributed import LOCAL

RAY_HELP = ("collect calibration statistics with Ray tasks on the cluster at ADDRESS (auto, HOST:6379, ray://HOST:10001; "
            "none: the cluster RAY_ADDRESS names, else one on this machine), then analyse each layer's error in a Ray task; "
            "same result as without; needs trtcompress[ray]")

TRAIN_HELP = ("fine-tune with torch DDP workers on Ray Train on the cluster at ADDRESS (as for quantize --ray); one worker gives "
              "the local run's weights bit for bit, more train on slices of the same batches; needs trtcompress[ray]")

COMPRESS_HELP = RAY_HELP + "; the finetune stage trains with its ray_workers (recipe option, default 2) DDP workers on Ray Train"


def add_ray_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup, help: str = RAY_HELP) -> None:
    """The flag for a config field ``ray`` (``--ray`` alone: ``local``)."""
    p.add_argument("--ray", nargs="?", const=LOCAL, default=None, metavar="ADDRESS", help=help)
