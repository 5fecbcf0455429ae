"""The process group of a multi-process run: where this process stands, and the collectives training uses.

Every helper is a no-op for a single process (no WORLD_SIZE in the environment), so one code path serves
both. Knows nothing of the training loop: `training`, `features` and `finetune` import it, never the reverse.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from edgecnn.device import import_torch, pick_device
from edgecnn.errors import EdgecnnError

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset, DistributedSampler

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the job (from torchrun's environment); one process by default."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0 alone writes files, shows progress and prints the summary."""
        return self.rank == 0

    def rank_seed(self, seed: int) -> int:
        """Per-rank randomness (augmentation, dropout) from the epoch's seed; `seed` itself alone."""
        return seed * self.world_size + self.rank


def env_dist() -> Dist:
    """The layout torchrun and the elastic launcher put in the environment of each worker."""
    try:
        return Dist(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as exc:
        raise EdgecnnError(f"bad RANK/WORLD_SIZE/LOCAL_RANK in the environment ({exc}); start the job "
                           "with torchrun or `edgecnn finetune --nproc N`") from exc


@contextmanager
def process_group(device_name: str, timeout: float) -> Iterator[tuple[Dist, torch.device]]:
    """Join the job's process group (NCCL on GPUs, gloo on CPU), leave it on exit; no-op alone."""
    dist = env_dist()
    if not dist.active:
        yield dist, pick_device(device_name)
        return
    from datetime import timedelta

    torch = import_torch()
    device = _rank_device(device_name, dist)
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend, timeout=timedelta(seconds=timeout),
                                         device_id=device if device.type == "cuda" else None)
    try:
        yield dist, device
        torch.distributed.barrier()  # nobody leaves while rank 0 still writes the run's files
    finally:
        torch.distributed.destroy_process_group()


def _rank_device(name: str, dist: Dist) -> torch.device:
    """GPU number LOCAL_RANK on its machine (after CUDA_VISIBLE_DEVICES), or the CPU."""
    torch, device = import_torch(), pick_device(name)
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if dist.local_rank >= count:
        raise EdgecnnError(f"local rank {dist.local_rank} has no GPU of its own ({count} visible); start at "
                           f"most {count} processes per machine, or use --device cpu")
    torch.cuda.set_device(dist.local_rank)
    return torch.device("cuda", dist.local_rank)


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """--batch-size is the global batch, split evenly: steps and learning rate mean what they mean alone."""
    if batch_size % world_size:
        raise EdgecnnError(f"--batch-size {batch_size} does not split over {world_size} processes; give a "
                           f"multiple of {world_size}")
    return batch_size // world_size


def main_first(dist: Dist, work: Callable[[], T]) -> T:
    """`work()` on rank 0 only (files, decoding checks), its result or EdgecnnError sent to every rank."""
    if not dist.active:
        return work()
    torch = import_torch()
    box: list[Any] = [None]
    if dist.main:
        try:
            box[0] = ("ok", work())
        except EdgecnnError as exc:
            box[0] = ("error", str(exc))
    torch.distributed.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise EdgecnnError(value)
    return value


def broadcast_weights(dist: Dist, module: torch.nn.Module) -> None:
    """Every rank takes rank 0's parameters and buffers (e.g. after rank 0 loaded best.pt)."""
    if dist.active:
        torch = import_torch()
        for tensor in module.state_dict().values():
            torch.distributed.broadcast(tensor, src=0)


def sum_across(dist: Dist, values: Sequence[float], device: torch.device) -> list[float]:
    """Sums over all ranks (all_reduce), e.g. of loss totals, correct counts and image counts."""
    if not dist.active:
        return list(values)
    torch = import_torch()
    totals = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(totals)
    return totals.tolist()


def shard_sampler(dist: Dist, dataset: Dataset, shuffle: bool) -> DistributedSampler | None:
    """Rank r takes items r, r+W, ... (padded to equal counts); None for one process."""
    if not dist.active:
        return None
    from torch.utils.data import DistributedSampler

    return DistributedSampler(dataset, dist.world_size, dist.rank, shuffle=shuffle, seed=0)


def gather_rows(dist: Dist, rows: torch.Tensor, total: int, device: torch.device) -> torch.Tensor:
    """Undo `shard_sampler(shuffle=False)`: every rank gets all `total` rows in the original order."""
    if not dist.active:
        return rows
    torch = import_torch()
    rows = rows.to(device)
    parts = [torch.empty_like(rows) for _ in range(dist.world_size)]
    torch.distributed.all_gather(parts, rows)
    # parts[r][i] is item i*W + r; dropping the tail drops the sampler's padding
    return torch.stack(parts, 1).flatten(0, 1)[:total].cpu()


def wrap_ddp(dist: Dist, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around `model` (rank 0's weights become everyone's); `model` alone."""
    if not dist.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
