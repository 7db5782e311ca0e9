"""How the networks' convolutions run: one call per layer, the form chosen per backend.

`impl` (`model.conv_impl`): "auto" (default) runs the exact CPU formulations (`cpu.py`,
`winograd.py`) when lowered for CPU and XLA's own convolutions (`xla.py`) elsewhere, where
cuDNN or the TPU's matrix unit pick the algorithm; "xla" and "cpu_tuned" force one or the
other. All forms compute the same function, so checkpoints move freely between impls.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import threading
from typing import Callable

import jax

from pix2pix_jax.kernels import cpu, xla

CONV_IMPLS = ("auto", "xla", "cpu_tuned")

# This thread's active `record_forms` lists: each traced convolution appends (impl branch,
# layer kind, form). Per thread, as programs may be traced concurrently.
_LOCAL = threading.local()


def _recorders() -> list[list[tuple[str, str, str]]]:
  if not hasattr(_LOCAL, "recorders"):
    _LOCAL.recorders = []
  return _LOCAL.recorders


def check_impl(impl: str) -> str:
  if impl not in CONV_IMPLS:
    raise ValueError(f"unknown model.conv_impl {impl!r}; choose one of {CONV_IMPLS} "
                     "(e.g. --config.model.conv_impl=auto)")
  return impl


def _record(branch: str, kind: str, form: str) -> None:
  for forms in _recorders():
    forms.append((branch, kind, form))


@contextlib.contextmanager
def record_forms():
  """Collects the (impl branch, kind, form) of every convolution traced inside the block."""
  forms: list[tuple[str, str, str]] = []
  _recorders().append(forms)
  try:
    yield forms
  finally:
    _recorders().remove(forms)


def _dispatch(impl: str, kind: str, xla_fn: Callable, cpu_forms: Callable, *args):
  """Runs `xla_fn(*args)` or the CPU form `cpu_forms(*args)` names, as `impl` says.

  Under "auto", `jax.lax.platform_dependent` picks by the platform the program is *lowered* for,
  so an artifact exported for several platforms carries both branches. `cpu_forms` (args →
  (form name, function)) is called only when the CPU branch is traced: the CPU forms are picked
  from concrete sizes, while XLA's convolutions take any (symbolic) size.
  """
  def on_xla(*a):
    _record("xla", kind, "xla")
    return xla_fn(*a)

  def on_cpu(*a):
    form, cpu_fn = cpu_forms(*a)
    _record("cpu_tuned", kind, form)
    return cpu_fn(*a)

  if check_impl(impl) == "xla":
    return on_xla(*args)
  if impl == "cpu_tuned":
    return on_cpu(*args)
  return jax.lax.platform_dependent(*args, cpu=on_cpu, default=on_xla)


def conv4x4(x: jax.Array, kernel: jax.Array, stride: int, impl: str = "auto") -> jax.Array:
  """PyTorch `Conv2d(k=4, s=stride, p=1)` of NHWC `x` with an HWIO kernel."""
  def cpu_forms(x, kernel):
    form = cpu.conv4x4_form(x.shape, kernel.shape, stride, x.dtype)
    return form, functools.partial(cpu.CONV4X4_FORMS[form], stride=stride)

  return _dispatch(impl, "conv4x4", functools.partial(xla.conv, stride=stride, padding=1),
                   cpu_forms, x, kernel)


def conv_transpose4x4(x: jax.Array, kernel: jax.Array, impl: str = "auto") -> jax.Array:
  """PyTorch `ConvTranspose2d(k=4, s=2, p=1)`; kernel[kh, kw, ci, co] = weight[ci, co, kh, kw]."""
  def cpu_forms(x, kernel):
    form = cpu.conv_transpose4x4_form(x.shape, kernel.shape, x.dtype)
    return form, cpu.CONV_TRANSPOSE4X4_FORMS[form]

  return _dispatch(impl, "conv_transpose4x4",
                   functools.partial(xla.conv_transpose, stride=2, padding=1), cpu_forms,
                   x, kernel)


def conv(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
         impl: str = "auto") -> jax.Array:
  """PyTorch `Conv2d(k, stride, padding)` with zero padding (the ResNet generators' layers)."""
  form = "lax" if stride == 1 else "im2col"
  return _dispatch(impl, f"conv{kernel.shape[0]}x{kernel.shape[0]}",
                   functools.partial(xla.conv, stride=stride, padding=padding),
                   lambda *_: (form, functools.partial(cpu.conv, stride=stride,
                                                       padding=padding)), x, kernel)


def conv_transpose3x3(x: jax.Array, kernel: jax.Array, impl: str = "auto") -> jax.Array:
  """PyTorch `ConvTranspose2d(k=3, s=2, p=1, output_padding=1)` (the ResNet generators')."""
  return _dispatch(impl, "conv_transpose3x3",
                   functools.partial(xla.conv_transpose, stride=2, padding=1, output_padding=1),
                   lambda *_: ("phases", cpu.conv_transpose3x3), x, kernel)


def dense(x: jax.Array, kernel_2d: jax.Array) -> jax.Array:
  """A 1×1 convolution: (..., Cin) @ (Cin, Cout), one matrix product on every backend."""
  return cpu.dot_last(x, kernel_2d)


def resolve(impl: str, platform: str) -> str:
  """The impl whose forms a program lowered for `platform` runs ("xla" or "cpu_tuned")."""
  if check_impl(impl) != "auto":
    return impl
  return "cpu_tuned" if platform == "cpu" else "xla"


def describe(forms: list[tuple[str, str, str]], impl: str, platform: str) -> str:
  """One line: which forms the traced convolutions take when lowered for `platform`."""
  branch = resolve(impl, platform)
  counts = collections.Counter(f"{kind}:{form}" for b, kind, form in forms if b == branch)
  what = ("XLA's own convolutions" if branch == "xla" else "the CPU formulations")
  listing = ", ".join(f"{n}× {name}" for name, n in sorted(counts.items()))
  return f"model.conv_impl={impl} on {platform}: {what} ({listing})"
