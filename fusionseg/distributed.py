"""Which share of a multi-field job this process does, under torchrun or SLURM (Lightning's cluster environments).

``fusionseg fit|validate|test|predict`` distribute through Lightning's strategies (``--trainer.strategy=ddp``);
commands that loop over files (``segment`` over a folder or glob) split the files by rank instead: no
communication, each field mapped by exactly one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def process_rank() -> tuple[int, int]:
    """(global rank, number of processes) of a torchrun or SLURM launch; (0, 1) for a plain run."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    for environment in (TorchElasticEnvironment, SLURMEnvironment):
        if environment.detect():
            env = environment()
            return env.global_rank(), env.world_size()
    return 0, 1


def share_of(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """This process's items: every ``world_size``-th from ``rank`` (disjoint, together all of them)."""
    return list(items[rank::world_size])
