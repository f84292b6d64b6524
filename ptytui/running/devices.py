"""Data-parallel inference across the devices of one node (``--devices all``) with
``tf.distribute.MirroredStrategy``: each batch is split across replicas, reduced per replica on
its own device, and the per-replica records are merged exactly on the host (TensorStats.merge).

Across nodes ptytui does not distribute: sharded headless runs (``--shard k/n``) are combined
with ``ptytui merge``. Logical CPU devices (``PTYTUI_CPU_REPLICAS=n`` or ``split_cpu(n)``) let
the distributed path be exercised on a machine without GPUs (tests, CI).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptytui.core.tfload import tf as _tf
from ptytui.errors import UsageError

# Environment variable: split the CPU into this many logical devices for ``--devices all`` when
# no GPU is visible (for testing the distributed path; one CPU device already uses every core).
CPU_REPLICAS_ENV = "PTYTUI_CPU_REPLICAS"


def split_cpu(n: int) -> bool:
    """Split the first physical CPU into ``n`` logical devices.

    Must run before TensorFlow initializes its devices (before any op, model load or
    ``list_logical_devices``). Returns False when that moment has passed (nothing changed).

    Parameters
    ----------
    n : int
        Logical CPU devices wanted (>= 1).
    """
    if n < 1:
        raise UsageError(f"{CPU_REPLICAS_ENV}: expected a positive integer, found {n}")

    tf = _tf()
    cpus = tf.config.list_physical_devices("CPU")
    if not cpus:
        return False
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError:  # devices already initialized
        return False
    return True


def cpu_replicas_from_env() -> int | None:
    """The ``PTYTUI_CPU_REPLICAS`` setting, or None when unset."""
    raw = os.environ.get(CPU_REPLICAS_ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{CPU_REPLICAS_ENV}: expected a positive integer, found {raw!r}") from None
    if value < 1:
        raise UsageError(f"{CPU_REPLICAS_ENV}: expected a positive integer, found {raw!r}")
    return value


@dataclass
class DeviceSet:
    """The strategy ``--devices all`` runs under, and what it spans (for reports)."""

    strategy: Any  # tf.distribute.MirroredStrategy
    devices: list[str]
    kind: str  # "GPU" or "CPU"

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def label(self) -> str:
        """E.g. "all: 2 x GPU (/device:GPU:0, /device:GPU:1)"."""
        names = ", ".join(d.split("device:")[-1] for d in self.devices)
        return f"all: {self.replicas} x {self.kind} ({names})"

    def scope(self):
        """Create (load) models inside this so their variables are mirrored on every replica."""
        return self.strategy.scope()


def build_strategy(*, use_cpu: bool | None = None) -> DeviceSet:
    """A MirroredStrategy over every visible GPU, or over the logical CPU devices.

    Parameters
    ----------
    use_cpu : bool, optional
        True: span the logical CPU devices even when GPUs are visible. None (default): the GPUs
        when there are any, else the CPU devices (one, unless ``PTYTUI_CPU_REPLICAS`` or
        ``split_cpu`` split it first).

    Returns
    -------
    DeviceSet
    """

    tf = _tf()
    if use_cpu is None:
        wanted = cpu_replicas_from_env()
        if wanted and not tf.config.list_physical_devices("GPU"):
            split_cpu(wanted)  # no-op when TF is already initialized
    gpus = [] if use_cpu else [d.name for d in tf.config.list_logical_devices("GPU")]
    if gpus:
        # NCCL all-reduce is never used (only per-replica results are read), but choosing the
        # plain reduction keeps the strategy valid on nodes where NCCL is missing.
        strategy = tf.distribute.MirroredStrategy(
            devices=gpus, cross_device_ops=tf.distribute.ReductionToOneDevice())
        return DeviceSet(strategy, gpus, "GPU")
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(
        devices=cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())
    return DeviceSet(strategy, cpus, "CPU")


class DistributedStep:
    """The inference step of ``inference._Step`` run on every replica with ``strategy.run``.

    Calling it with one host batch (a dict of numpy arrays keyed by input name) splits the batch
    into contiguous per-replica parts (sizes differ by at most one), runs the model and the
    on-device reductions on each replica, and returns the per-replica reductions in replica order
    (for the host to merge) and the first sample of each output from the first replica.
    A batch smaller than the replica count runs whole on the default device.
    """

    def __init__(self, single_step, device_set: DeviceSet):

        tf = _tf()
        self.device_set = device_set
        self.strategy = device_set.strategy
        self.replicas = device_set.replicas
        self.single_step = single_step
        step_fn = single_step.raw_step
        strategy = self.strategy

        def distributed(per_replica_inputs):
            return strategy.run(step_fn, args=(per_replica_inputs,))

        self._fn = tf.function(distributed, reduce_retracing=True)

    def _names(self, n: int) -> list[str]:
        return self.single_step._names(n)

    def __call__(self, fed: dict[str, np.ndarray]):
        batch = len(next(iter(fed.values())))
        if self.replicas == 1 or batch < self.replicas:
            result = self.single_step(fed)
            self.output_counts = self.single_step.output_counts
            return result
        parts = {name: np.array_split(value, self.replicas) for name, value in fed.items()}
        per_replica = self.strategy.experimental_distribute_values_from_function(
            lambda ctx: {name: chunks[ctx.replica_id_in_sync_group] for name, chunks in parts.items()})
        reductions, firsts, counts = self._fn(per_replica)
        self.output_counts = [int(c) for c in self.strategy.experimental_local_results(counts)]
        local_reductions = list(self.strategy.experimental_local_results(reductions))
        first_replica = [self.strategy.experimental_local_results(f)[0] for f in firsts]
        return local_reductions, first_replica
