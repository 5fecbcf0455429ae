"""Several processes, one run: `torchrun -m edgecnn finetune` or `edgecnn finetune --nproc/--devices`.

PyTorch's own machinery throughout: the elastic launcher starts the processes and ends the whole job
when one fails, `DistributedDataParallel` averages gradients (NCCL on GPUs, gloo on CPU), and every
collective has the process-group time-out, so a rank that hangs ends the job instead of freezing it.
A single process (no WORLD_SIZE in the environment) goes through the same calls as no-ops.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from edgecnn.errors import EdgecnnError
from edgecnn.training import import_torch, pick_device

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset, DistributedSampler

    from edgecnn.finetune import FinetuneConfig, FinetuneResult

T = TypeVar("T")
FAULT_VARIABLE = "EDGECNN_TEST_FAULT"  # tests only: "RANK|*:raise|hang:POINT" makes a rank fail there


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


def fault_point(dist: Dist, point: str) -> None:
    """Test hook: EDGECNN_TEST_FAULT="1:raise:features" makes rank 1 fail (or hang) at that point."""
    fault = os.environ.get(FAULT_VARIABLE, "")
    if fault.count(":") != 2:
        return
    rank, action, where = fault.split(":")
    if where == point and rank in ("*", str(dist.rank)):
        if action == "hang":
            time.sleep(3600)
        raise RuntimeError(f"{FAULT_VARIABLE}: rank {dist.rank} failed on purpose at {point}")


def launch(config: FinetuneConfig, nproc: int, devices: Sequence[int] = ()) -> FinetuneResult:
    """Run `finetune(config)` in `nproc` local processes through torch's elastic launcher (no shell);
    the first failure ends them all and comes back as EdgecnnError."""
    import_torch()
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config.check()
    _check_launch(nproc, devices)
    per_rank_batch(config.batch_size, nproc)
    launch_config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"edgecnn-"
                                 f"{uuid.uuid4().hex[:8]}", rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0",
                                 max_restarts=0, monitor_interval=0.2, start_method="spawn")
    try:
        with _quiet_launcher():
            results = elastic_launch(launch_config, _worker)(config, tuple(devices), nproc)
    except ChildFailedError as exc:
        raise _job_error(exc) from None
    return results[0]


def parse_devices(text: str | None) -> tuple[int, ...]:
    """--devices "0,1" -> (0, 1); None or "" -> ()."""
    try:
        return tuple(int(part) for part in (text or "").split(",") if part.strip())
    except ValueError:
        raise EdgecnnError(f"--devices {text!r} is not a list of GPU numbers; give e.g. --devices 0,1"
                           ) from None


def _check_launch(nproc: int, devices: Sequence[int]) -> None:
    torch = import_torch()
    if env_dist().active:
        raise EdgecnnError("this process is already one of a torchrun job; drop --nproc and --devices")
    if devices and nproc != len(devices):
        raise EdgecnnError(f"--nproc {nproc} with {len(devices)} --devices; give one process per GPU")
    if devices:
        count = torch.cuda.device_count()
        missing = [d for d in devices if not 0 <= d < count]
        if missing:
            raise EdgecnnError(f"no GPU {missing[0]} here: PyTorch sees {count} CUDA GPUs; use --nproc N "
                               "for CPU processes")


@contextmanager
def _quiet_launcher() -> Iterator[None]:
    """The launcher logs each failure with its own traceback; we report the rank's error instead."""
    import logging

    loggers = [logging.getLogger(name) for name in ("torch.distributed.elastic", "torch.multiprocessing")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _worker(config: FinetuneConfig, devices: tuple[int, ...], nproc: int) -> FinetuneResult:
    """One rank, in a fresh process: pick its GPUs and threads, then the ordinary `finetune`."""
    from torch.distributed.elastic.multiprocessing.errors import record

    if devices:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in devices)
    if "OMP_NUM_THREADS" not in os.environ:  # N processes share the cores, as torchrun arranges
        import_torch().set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
    return record(_finetune_rank)(config)  # record: the parent learns a bug's exception and traceback


def _finetune_rank(config: FinetuneConfig) -> FinetuneResult:
    from edgecnn.finetune import finetune

    try:
        return finetune(config)
    except EdgecnnError as exc:  # the user's mistake: one line for the parent, no traceback
        error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
        if error_file:
            with open(error_file, "w") as file:
                json.dump({"message": f"EdgecnnError: {exc}", "timestamp": int(time.time())}, file)
        sys.exit(2)


def _job_error(exc: Any) -> EdgecnnError:
    """The root failure in one line; a bug's traceback goes to stderr first."""
    rank, failure = exc.get_first_failure()
    message, trace = failure.message, ""
    if isinstance(message, dict):
        message, trace = message.get("message", ""), message.get("extraInfo", {}).get("py_callstack", "")
    if message.startswith("EdgecnnError: "):
        return EdgecnnError(message.removeprefix("EdgecnnError: "))
    if trace:
        sys.stderr.write(trace)
    reason = message or f"exit code {failure.exitcode}"
    return EdgecnnError(f"process {rank} of the training job failed, so the job stopped: {reason}")
