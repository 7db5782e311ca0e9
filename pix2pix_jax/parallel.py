"""One code path for 1 device, N devices and N hosts: a 1-D `data` mesh over every device.

The batch is sharded along `data`, the train state is replicated. Under `jax.jit` the batch-norm
statistics of a sharded batch are reduced over the *global* batch by XLA (SyncBatchNorm for free),
and with `jax_threefry_partitionable` random bits do not depend on the sharding.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def configure_jax() -> None:
  """Process-wide settings every entry point applies before touching JAX arrays."""
  jax.config.update("jax_threefry_partitionable", True)


def maybe_initialize_distributed(coordinator_address: str = "", num_processes: int = 0,
                                 process_id: int = -1, auto: bool = False,
                                 initialization_timeout: int = 300) -> bool:
  """Starts JAX's distributed runtime when asked; returns whether it did.

  Explicit: pass the coordinator address, the number of processes and this process's id (any
  cluster, loopback included). `auto=True` lets JAX detect the cluster (Cloud TPU pods, SLURM,
  Kubernetes/Open MPI) from the environment.
  """
  if coordinator_address or num_processes > 1:
    if not coordinator_address or num_processes < 1 or process_id < 0:
      raise ValueError(
          "multi-process launch needs --coordinator_address, --num_processes and --process_id "
          f"together (got {coordinator_address!r}, {num_processes}, {process_id})")
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               initialization_timeout=initialization_timeout)
    return True
  if auto:
    jax.distributed.initialize(initialization_timeout=initialization_timeout)
    return True
  return False


def make_mesh(devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def local_batch_size(global_batch: int, mesh: Mesh) -> int:
  """The rows of each global batch this process loads, with clear errors when it cannot split."""
  n_devices = mesh.devices.size
  n_processes = jax.process_count()
  if global_batch % n_devices:
    raise ValueError(f"global batch {global_batch} (config.batch_size) is not divisible by "
                     f"{n_devices} devices; use a multiple of {n_devices}")
  if global_batch % n_processes:
    raise ValueError(f"global batch {global_batch} is not divisible by {n_processes} processes")
  local = global_batch // n_processes
  n_local_devices = len([d for d in mesh.devices.flat if d.process_index == jax.process_index()])
  if n_local_devices and local % n_local_devices:
    raise ValueError(f"per-process batch {local} is not divisible by the {n_local_devices} "
                     "local devices")
  return local


def global_batch(local: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Host-local rows → one global `jax.Array` per key, sharded along `data`."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}


def replicate_host_array(x: np.ndarray, mesh: Mesh) -> jax.Array:
  """The same host value on every process → a replicated global array."""
  return jax.make_array_from_process_local_data(replicated(mesh), np.asarray(x))


def to_host(x: jax.Array) -> np.ndarray:
  """A replicated (or fully addressable) array as numpy, on any process."""
  if getattr(x, "is_fully_addressable", True):
    return np.asarray(x)
  return np.asarray(x.addressable_data(0))


def is_main_process() -> bool:
  return jax.process_index() == 0


def describe() -> str:
  return (f"process {jax.process_index()}/{jax.process_count()}, "
          f"{jax.local_device_count()} local / {jax.device_count()} global "
          f"{jax.default_backend()} devices, pid {os.getpid()}")


def log_topology() -> None:
  logging.info("JAX: %s", describe())
