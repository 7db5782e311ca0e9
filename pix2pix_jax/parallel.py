"""One code path for 1 device, N devices and N hosts: a 1-D `data` mesh over every device.

The batch is sharded along `data`, the train state replicated. Under `jit` batch-norm statistics
reduce over the global batch and random bits depend only on the key and the global shape
(partitionable threefry, set by `platform.configure`), so a run is the same computation on any
device count up to reduction order (docs/scaling.md), and checkpoints restore on any count.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from pix2pix_jax import errors

DATA_AXIS = "data"

# Seconds; each can be overridden by the environment variable of the same name (tests use short
# ones so that a process whose peer died fails fast instead of waiting minutes).
DISTRIBUTED_TIMEOUTS = {
    "PIX2PIX_INIT_TIMEOUT": 300,  # waiting for every process to join
    "PIX2PIX_HEARTBEAT_TIMEOUT": 100,  # a silent peer is declared dead after this
    "PIX2PIX_SHUTDOWN_TIMEOUT": 300,  # waiting for the others at exit
}


def _timeout(name: str) -> int:
  value = os.environ.get(name, "")
  if not value:
    return DISTRIBUTED_TIMEOUTS[name]
  try:
    return int(value)
  except ValueError:
    raise errors.UsageError(f"environment variable {name}={value!r} must be a number of "
                            "seconds") from None


def maybe_initialize_distributed(coordinator_address: str = "", num_processes: int = 0,
                                 process_id: int = -1, auto: bool = False) -> bool:
  """Starts JAX's distributed runtime when asked; returns whether it did.

  Explicit: pass the coordinator address, the number of processes and this process's id (any
  cluster, loopback included). `auto=True` lets JAX detect the cluster (Cloud TPU pods, SLURM,
  Open MPI) from the environment. Must run before anything touches a device.
  """
  timeouts = dict(initialization_timeout=_timeout("PIX2PIX_INIT_TIMEOUT"),
                  heartbeat_timeout_seconds=_timeout("PIX2PIX_HEARTBEAT_TIMEOUT"),
                  shutdown_timeout_seconds=_timeout("PIX2PIX_SHUTDOWN_TIMEOUT"))
  if coordinator_address or num_processes > 1 or process_id >= 0:
    if not coordinator_address or num_processes < 1 or not 0 <= process_id < num_processes:
      raise errors.UsageError(
          "multi-process launch needs --coordinator_address=HOST:PORT, --num_processes=P and "
          f"--process_id in [0, P) together (got {coordinator_address!r}, {num_processes}, "
          f"{process_id})")
    logging.info("Joining %d processes as process %d via coordinator %s (waiting up to %d s "
                 "for all of them)", num_processes, process_id, coordinator_address,
                 timeouts["initialization_timeout"])
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id, **timeouts)
    return True
  if auto:
    logging.info("Detecting the cluster and joining its processes (waiting up to %d s)",
                 timeouts["initialization_timeout"])
    jax.distributed.initialize(**timeouts)
    return True
  return False


def make_mesh(devices=None) -> Mesh:
  """A 1-D `data` mesh over `devices` (default: every device of every process).

  Devices are ordered by (process, id) so that each process's devices hold consecutive rows of
  the batch, which is what the input pipeline loads per process. For parameter sharding later
  (FSDP or tensor parallelism), reshape this into a 2-D ('data', 'model') mesh here and give
  `state_shardings` a rule for the big kernels.
  """
  devices = jax.devices() if devices is None else list(devices)
  devices = sorted(devices, key=lambda d: (d.process_index, d.id))
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`; every other axis whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def state_shardings(abstract_state, mesh: Mesh):
  """The sharding of every leaf of the train state: replicated.

  pix2pix's largest network (unet_256 with Adam's moments) fits on one accelerator, so plain
  data parallelism is enough. This is the one place to change for parameter sharding: return,
  e.g., `NamedSharding(mesh, P(None, None, None, 'model'))` for the large conv kernels; the
  checkpoint format does not change (Orbax reshards on restore).
  """
  return jax.tree.map(lambda _: replicated(mesh), abstract_state)


def check_batch_split(global_batch: int, num_devices: int, num_processes: int = 1,
                      num_local_devices: int | None = None) -> int:
  """The rows each process loads per step, or a ValueError saying how to fix the batch size."""
  if num_local_devices is None:
    num_local_devices = num_devices // max(num_processes, 1)
  if global_batch < 1:
    raise errors.UsageError(f"config.batch_size must be positive, got {global_batch}")
  if global_batch % num_devices:
    multiple = num_devices * -(-global_batch // num_devices)
    raise errors.UsageError(
        f"global batch {global_batch} (config.batch_size) is not divisible by the "
        f"{num_devices} devices it is sharded over; use a multiple of {num_devices}, e.g. "
        f"--config.batch_size={multiple}")
  if global_batch % num_processes:
    raise errors.UsageError(f"global batch {global_batch} (config.batch_size) is not "
                            f"divisible by {num_processes} processes")
  local = global_batch // num_processes
  if num_local_devices and local % num_local_devices:
    raise errors.UsageError(
        f"per-process batch {local} (config.batch_size {global_batch} / {num_processes} "
        f"processes) is not divisible by this process's {num_local_devices} local devices; "
        "give every process the same number of devices and make config.batch_size a "
        "multiple of the total device count")
  return local


def local_batch_size(global_batch: int, mesh: Mesh) -> int:
  """The rows of each global batch this process loads (see `check_batch_split`)."""
  here = jax.process_index()
  n_local = sum(d.process_index == here for d in mesh.devices.flat)
  n_processes = len({d.process_index for d in mesh.devices.flat})
  return check_batch_split(global_batch, mesh.devices.size, n_processes, n_local)


def global_batch(local: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """This process's rows → one global `jax.Array` per key, sharded along `data`.

  Every process passes the same number of rows; process p's rows become rows [p·L, (p+1)·L)
  of the global batch.
  """
  n_local = len(sharding.addressable_devices)
  n_processes = len({d.process_index for d in sharding.device_set})
  out = {}
  for key, value in local.items():
    value = np.asarray(value)
    if value.shape[0] % n_local:
      raise ValueError(f"batch[{key!r}] has {value.shape[0]} rows on this process, not "
                       f"divisible by its {n_local} local devices")
    global_shape = (value.shape[0] * n_processes, *value.shape[1:])
    out[key] = jax.make_array_from_process_local_data(sharding, value, global_shape)
  return out


def batch_placer(sharding: NamedSharding):
  """How the training loop hands this process's batches to the step: a function applied to each
  batch ahead of its step, or None to hand the host arrays to the step as they are.

  On GPU and TPU, and whenever several processes form the global batch, each batch becomes a
  global array (`global_batch`) one step ahead, so its transfer overlaps the running step. On a
  single-process CPU backend the devices' memory is the host's: nothing is worth moving ahead,
  and the compiled step takes numpy arrays through its C++ dispatch at no cost, where
  `jax.device_put` would add its Python overhead to every step.
  """
  if jax.process_count() == 1 and all(d.platform == "cpu" for d in sharding.device_set):
    return None
  return lambda local: global_batch(local, sharding)


def replicate_host_array(x: np.ndarray, mesh: Mesh) -> jax.Array:
  """The same host value on every process → a replicated global array."""
  return jax.make_array_from_process_local_data(replicated(mesh), np.asarray(x))


def to_host(x: jax.Array) -> np.ndarray:
  """A replicated (or fully addressable) array as numpy, on any process."""
  if getattr(x, "is_fully_addressable", True):
    return np.asarray(x)
  return np.asarray(x.addressable_data(0))


def is_main_process() -> bool:
  """Process 0 writes logs, samples and the results page; every process checkpoints."""
  return jax.process_index() == 0


def describe() -> str:
  return (f"process {jax.process_index()}/{jax.process_count()}, "
          f"{jax.local_device_count()} local / {jax.device_count()} global "
          f"{jax.default_backend()} devices, pid {os.getpid()}")


def log_topology() -> None:
  logging.info("JAX: %s", describe())
