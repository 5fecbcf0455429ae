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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from edgecnn.device import import_torch
from edgecnn.errors import EdgecnnError
from edgecnn.process_group import env_dist, per_rank_batch

if TYPE_CHECKING:

    from edgecnn.finetune import FinetuneConfig, FinetuneResult

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
