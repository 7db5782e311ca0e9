"""Every rule a config must follow, checked in one place before anything is built.

`check(config, mode=...)` raises one `errors.ConfigError` listing every problem, each naming the
key as typed on the command line (`--config.optim.lr=-1.0: must be a number > 0`). The entry
points call it first, so the code behind them can trust the config. Checks that need the data
(an image's size, a split's length) stay where the data is read.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Iterable

from absl import logging

from pix2pix_jax import (errors, evaluate, kernels, layers, losses, models, modes, parallel,
                         state, storage)
from pix2pix_jax.data import datasets, pipeline, synthetic

# The rows below say which part of a config a rule belongs to; a mode checks the parts it
# reads (`modes.MODES[mode].reads`) and always the model and test-time settings (ALL).
ALL = None
DATA, TRAIN, BUILD, EVAL = modes.DATA, modes.TRAINING, modes.OPTIMIZER, modes.EVALUATION
# Sanity limits: a side or width past these is a typo (and cannot be built or rendered).
MAX_SIDE = 16384  # pixels
MAX_WIDTH = 4096  # base width of a network (the paper: 64)
_MISSING = object()


# ---------------------------------------------------------------------------- what a value must be

def _show(value: Any) -> str:
  """A value as it would be typed after `--config.key=`."""
  if isinstance(value, str) and value and not any(c.isspace() for c in value):
    return value
  return repr(value)


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def integer(low: int | None = None, high: int | None = None, note: str = ""):
  """An integer in [low, high] (either bound may be open-ended)."""
  if low is not None and high is not None:
    allowed = f"an integer in [{low}, {high}]"
  elif low is not None:
    allowed = f"an integer >= {low}"
  else:
    allowed = "an integer"
  allowed += f" ({note})" if note else ""

  def check(value):
    ok = _is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    return None if ok else f"must be {allowed}"
  return check


def number(low: float, *, low_open: bool = False, high: float | None = None,
           high_open: bool = True, note: str = ""):
  """A finite number (int or float) in the interval given."""
  left = f"{'(' if low_open else '['}{low:g}"
  allowed = (f"a number in {left}, {high:g}{')' if high_open else ']'}" if high is not None
             else f"a number {'>' if low_open else '>='} {low:g}")
  allowed += f" ({note})" if note else ""

  def check(value):
    ok = _is_number(value) and (value > low if low_open else value >= low) and (
        high is None or (value < high if high_open else value <= high))
    return None if ok else f"must be {allowed}"
  return check


def choice(options: Iterable[str]):
  options = tuple(options)

  def check(value):
    return None if value in options else f"must be one of {', '.join(options)}"
  return check


def boolean(value):
  return None if isinstance(value, bool) else "must be True or False"


def text(value):
  return None if isinstance(value, str) else "must be a string"


def dataset_name(value):
  return None if datasets.is_known(value) else f"must be {datasets.choices()}"


def split_name(value):
  return None if isinstance(value, str) and value else "must be a split name, e.g. train"


def channels(value):
  return None if _is_int(value) and value in (1, 3) else "must be 1 (grey) or 3 (RGB)"


def workers(value):
  # A saved config's override gives the number as text.
  if value == "auto" or _is_int(value) and value >= 0 or isinstance(value, str) and value.isdigit():
    return None
  return "must be auto or an integer >= 0 (0 = read in the training process)"


def train_steps(value):
  if _is_int(value) and (value == -1 or value >= 1):
    return None
  return "must be an integer >= 1, or -1 for the epochs of the schedule"


_INTERVAL = "in steps; 0 = never"

# (key, the part of a config it belongs to, check): each check returns None or what the value
# must be.
FIELD_RULES: tuple[tuple[str, str | None, Callable[[Any], str | None]], ...] = (
    ("seed", ALL, integer(0, 2**32 - 1)),
    # ---- data
    ("data.dataset", DATA, dataset_name),
    ("data.data_dir", DATA, text),
    ("data.tfds_data_dir", DATA, text),
    ("data.manual_dir", DATA, text),
    ("data.direction", ALL, choice(pipeline.DIRECTIONS)),
    ("data.preprocess", ALL, choice(pipeline.PREPROCESS_MODES)),
    ("data.load_size", ALL, integer(1, MAX_SIDE, note="pixels")),
    ("data.crop_size", ALL, integer(1, MAX_SIDE, note="pixels")),
    ("data.aspect_ratio", ALL, number(0, low_open=True, note="width / height")),
    ("data.no_flip", TRAIN, boolean),
    ("data.train_split", TRAIN, split_name),
    ("data.eval_split", DATA, text),
    ("data.max_dataset_size", DATA, integer(0, note="0 = all files")),
    ("data.num_synthetic", DATA, integer(1)),
    ("data.num_workers", TRAIN, workers),
    ("data.num_threads", DATA, integer(1)),
    ("data.prefetch", DATA, integer(1, note="batches")),
    ("data.skip_bad_images", DATA, boolean),
    # ---- model
    ("model.generator", ALL, choice(models.GENERATORS)),
    ("model.num_downs", ALL, integer(1, 16, note="levels; inputs are multiples of 2^num_downs")),
    ("model.ngf", ALL, integer(1, MAX_WIDTH)),
    ("model.discriminator", ALL, choice(models.DISCRIMINATORS)),
    ("model.n_layers_d", ALL, integer(0, 16)),
    ("model.ndf", ALL, integer(1, MAX_WIDTH)),
    ("model.norm", ALL, choice(layers.NORMS)),
    ("model.use_dropout", ALL, boolean),
    ("model.dropout_rate", ALL, number(0, high=1)),
    ("model.input_nc", ALL, channels),
    ("model.output_nc", ALL, channels),
    ("model.init_type", BUILD, choice(layers.INIT_TYPES)),
    ("model.init_gain", BUILD, number(0, low_open=True)),
    ("model.conv_impl", ALL, choice(kernels.CONV_IMPLS)),
    # ---- loss
    ("loss.gan_mode", ALL, choice(losses.GAN_MODES)),
    ("loss.lambda_l1", TRAIN, number(0)),
    ("loss.lambda_gp", TRAIN, number(0, note="0 = no gradient penalty")),
    # ---- optimiser and schedule
    ("optim.lr", BUILD, number(0, low_open=True, note="Adam's learning rate, e.g. 0.0002")),
    ("optim.beta1", BUILD, number(0, high=1)),
    ("optim.beta2", BUILD, number(0, high=1)),
    ("optim.lr_policy", BUILD, choice(state.LR_POLICIES)),
    ("optim.n_epochs", BUILD, integer(0, note="epochs")),
    ("optim.n_epochs_decay", BUILD, integer(0, note="epochs")),
    ("optim.lr_decay_iters", BUILD, integer(1, note="epochs")),
    # ---- loop
    ("batch_size", TRAIN, integer(1, note="the global batch over every device")),
    ("num_train_steps", TRAIN, train_steps),
    ("compute_dtype", ALL, choice(state.COMPUTE_DTYPES)),
    ("deterministic", ALL, boolean),
    ("require_identical_environment", TRAIN, boolean),
    ("compilation_cache_dir", ALL, text),
    ("log_every_steps", TRAIN, integer(0, note=_INTERVAL)),
    ("sample_every_steps", TRAIN, integer(0, note=_INTERVAL)),
    ("num_samples", DATA, integer(1)),
    ("eval_every_steps", TRAIN, integer(0, note=_INTERVAL)),
    ("eval_mode", ALL, choice(evaluate.EVAL_MODES)),
    ("eval_batch_size", ALL, integer(1)),
    ("num_test", EVAL, integer(0, note="0 = the whole split")),
    ("checkpoint_every_steps", TRAIN, integer(0, note="in steps; 0 = only the last step")),
    ("max_to_keep", TRAIN, integer(0, note="0 = keep all")),
    ("keep_every_steps", TRAIN, integer(0, note="in steps; 0 = none kept besides")),
    ("tensorboard", TRAIN, boolean),
    ("report.reference_workdir", TRAIN, text),
)


def _lookup(config, key: str):
  node = config
  for part in key.split("."):
    try:
      if part not in node:
        return _MISSING
      node = node[part]
    except TypeError:  # a section replaced by a value
      return _MISSING
  return node


def _problem(key: str, value, must: str) -> str:
  return f"--config.{key}={_show(value)}: {must}"


# ---------------------------------------------------------------------------- several keys together

class _Context:
  """What the cross rules know besides the config."""

  def __init__(self, mode: str, num_devices: int | None, num_processes: int):
    self.mode, self.num_devices, self.num_processes = mode, num_devices, num_processes


def _input_sizes(config) -> list[tuple[str, int]]:
  """(key to change, pixels) for every input side the networks are built at from the config.

  Test time builds them at crop_size × crop_size whatever the preprocessing; training at the
  crop, whose width the resize modes scale by aspect_ratio.
  """
  d = config.data
  sizes = [("data.crop_size", d.crop_size)]
  if d.preprocess == "resize_and_crop" and round(d.crop_size * d.aspect_ratio) != d.crop_size:
    sizes.append(("data.aspect_ratio", round(d.crop_size * d.aspect_ratio)))
  return sizes


def _sizes(config, ctx):
  d, m = config.data, config.model
  if d.preprocess == "resize_and_crop" and round(d.load_size * d.aspect_ratio) > MAX_SIDE:
    yield (f"--config.data.aspect_ratio={_show(d.aspect_ratio)}: images are resized to "
           f"{d.load_size}×{round(d.load_size * d.aspect_ratio)} pixels, wider than {MAX_SIDE}")
    return
  if d.preprocess in ("resize_and_crop", "scale_width_and_crop") and d.crop_size > d.load_size:
    yield (f"--config.data.crop_size={d.crop_size}: must be <= --config.data.load_size="
           f"{d.load_size} (data.preprocess={d.preprocess} scales to load_size, then crops)")
  generator, discriminator = models.make_generator(config), models.make_discriminator(config)
  multiple, smallest = generator.size_multiple, generator.min_side
  network = f"{generator.title} (model.generator={m.generator})"
  for key, size in _input_sizes(config):
    if size % multiple or size < smallest:
      value = d.crop_size if key == "data.crop_size" else d.aspect_ratio
      side = "" if key == "data.crop_size" else f" crops {d.crop_size}×{size} pixels:"
      fix = max(smallest, size - size % multiple)
      yield (f"--config.{key}={_show(value)}:{side} {network} needs sides that are "
             f"multiples of {multiple}" + (f", at least {smallest}" if smallest > multiple
                                           else "")
             + (f", e.g. --config.data.crop_size={fix}" if key == "data.crop_size" else ""))
  for key, size in _input_sizes(config):
    if size < discriminator.min_side:
      value = d.crop_size if key == "data.crop_size" else d.aspect_ratio
      yield (f"--config.{key}={_show(value)}: {size} pixels are too few for "
             f"{discriminator.title} (model.discriminator={m.discriminator}), which needs "
             f"{discriminator.min_side}; use larger crops, or fewer layers "
             "(--config.model.discriminator=n_layers --config.model.n_layers_d=N)")


def _synthetic(config, ctx):
  d = config.data
  if d.dataset != "synthetic":
    return
  key = "load_size" if "resize" in d.preprocess else "crop_size"
  if d[key] < synthetic.MIN_IMAGE_SIZE:
    yield (f"--config.data.{key}={d[key]}: the synthetic facades are drawn at "
           f"{synthetic.MIN_IMAGE_SIZE} pixels or more")
  if TRAIN in modes.MODES[ctx.mode].reads and d.num_synthetic < config.batch_size:
    yield (f"--config.data.num_synthetic={d.num_synthetic}: fewer examples than one batch; "
           f"use at least --config.batch_size={config.batch_size}")


def _data_dir(config, ctx):
  d = config.data
  if d.dataset != "folder":
    return
  if not d.data_dir:
    yield ("--config.data.data_dir='': data.dataset=folder needs the folder of image pairs, "
           "--config.data.data_dir=PATH (holding train/ and val/)")
  elif not storage.is_remote(d.data_dir) and not os.path.isdir(os.path.expanduser(d.data_dir)):
    yield (f"--config.data.data_dir={_show(d.data_dir)}: no such folder; give the folder of "
           "image pairs (holding train/ and val/)")


# Config keys that hold a path: each a local path or a bucket URL of a scheme served here.
PATH_KEYS = ("data.data_dir", "data.tfds_data_dir", "data.manual_dir", "compilation_cache_dir",
             "report.reference_workdir")


def _path_schemes(config, ctx):
  for key in PATH_KEYS:
    value = _lookup(config, key)
    if isinstance(value, str) and storage.is_remote(value) and \
        storage.scheme(value) not in storage.CLIENTS:
      yield (f"--config.{key}={_show(value)}: {storage.scheme(value)}:// is not supported; use "
             "a local path or gs://BUCKET/PATH")


def _schedule(config, ctx):
  o = config.optim
  if config.num_train_steps == -1 and o.n_epochs + o.n_epochs_decay < 1:
    yield (f"--config.optim.n_epochs={o.n_epochs}: with --config.optim.n_epochs_decay="
           f"{o.n_epochs_decay} and --config.num_train_steps=-1 nothing would be trained; "
           "give at least one epoch, or --config.num_train_steps=N")
  if o.lr_policy == "cosine" and o.n_epochs < 1:
    yield (f"--config.optim.n_epochs={o.n_epochs}: must be >= 1 with "
           "--config.optim.lr_policy=cosine (the epochs it anneals over)")


def _batch_over_devices(config, ctx):
  if ctx.num_devices is None:
    return
  try:
    parallel.check_batch_split(config.batch_size, ctx.num_devices, ctx.num_processes)
  except ValueError as e:
    yield f"--config.batch_size={config.batch_size}: {e}"


# (the part of a config it belongs to, the keys it reads, rule): each rule yields problem
# lines; it runs only when every key it reads is present and passed its own row.
CROSS_RULES = (
    (ALL, ("data.preprocess", "data.load_size", "data.crop_size", "data.aspect_ratio",
           "model.generator", "model.num_downs", "model.discriminator", "model.n_layers_d"),
     _sizes),
    (DATA, ("data.dataset", "data.preprocess", "data.load_size", "data.crop_size",
            "data.num_synthetic", "batch_size"), _synthetic),
    (DATA, ("data.dataset", "data.data_dir"), _data_dir),
    (ALL, (), _path_schemes),
    (TRAIN, ("num_train_steps", "optim.n_epochs", "optim.n_epochs_decay", "optim.lr_policy"),
     _schedule),
    (TRAIN, ("batch_size",), _batch_over_devices),
)


# ---------------------------------------------------------------------------- the check

def problems(config, *, mode: str = "train", num_devices: int | None = None,
             num_processes: int = 1) -> list[str]:
  """Every problem of `config` for `mode`, one line each (empty when it is valid).

  Each key is checked by its row of `FIELD_RULES`, then several keys together by `CROSS_RULES`.
  Keys a config lacks (a config saved by an older version) are left to the code's defaults.
  `num_devices` / `num_processes`: check that the global batch splits over them (training).
  """
  if mode not in modes.MODES:
    raise errors.UsageError(f"unknown mode {mode!r}; choose one of {tuple(modes.MODES)}")
  reads = modes.MODES[mode].reads
  applies = lambda part: part is ALL or part in reads  # noqa: E731
  found, bad = [], set()
  for key, part, check in FIELD_RULES:
    if not applies(part):
      continue
    value = _lookup(config, key)
    if value is _MISSING:
      continue
    must = check(value)
    if must:
      found.append(_problem(key, value, must))
      bad.add(key)
  ctx = _Context(mode, num_devices, num_processes)
  for part, keys, rule in CROSS_RULES:
    if not applies(part) or any(key in bad or _lookup(config, key) is _MISSING for key in keys):
      continue
    found.extend(rule(config, ctx))
  return found


def check(config, *, mode: str = "train", num_devices: int | None = None,
          num_processes: int = 1) -> None:
  """Raises `errors.ConfigError` listing every problem of `config` for `mode`."""
  found = problems(config, mode=mode, num_devices=num_devices, num_processes=num_processes)
  if found:
    raise errors.ConfigError(found)


def warnings(config) -> list[str]:
  """Training settings that work but may surprise (logged by the training loop)."""
  every, keep = config.checkpoint_every_steps, config.keep_every_steps
  found = []
  if every == 0:
    found.append("checkpoint_every_steps=0: only the last step (and a preemption) is saved; a "
                 "crash loses the whole run.")
  elif keep and keep % every:
    found.append(f"keep_every_steps={keep} is not a multiple of checkpoint_every_steps={every}: "
                 "only steps that are multiples of both are kept.")
  return found


def log_warnings(config) -> None:
  for line in warnings(config):
    logging.warning("%s", line)
