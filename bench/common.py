"""What every benchmark script shares: the machine description and docs/benchmarks.md sections."""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
# The authors' facades folder (train/, val/) for the benchmarks that read it directly, named by
# the variable configs/facades.py reads; a path that does not exist when it is unset.
FACADES = pathlib.Path(os.environ.get("PIX2PIX_FACADES_DIR") or "/nonexistent/facades")


def cpu_model() -> str:
  try:
    text = pathlib.Path("/proc/cpuinfo").read_text()
  except OSError:
    return platform.processor() or "unknown CPU"
  match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
  return match.group(1).strip() if match else "unknown CPU"


def machine_line(*libraries: str) -> str:
  """CPU, cores, OS, Python and the versions of `libraries` (already importable), and today."""
  import importlib
  versions = "".join(f", {name} {importlib.import_module(name).__version__}"
                     for name in libraries)
  return (f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
          f"Python {platform.python_version()}{versions}; {datetime.date.today().isoformat()}")


def write_section(title: str, body: str, path: pathlib.Path = DOCS) -> None:
  """Replaces the generated block of section `## {title}` in docs/benchmarks.md.

  The block sits between `<!-- {title}: generated -->` and `<!-- {title}: end -->`; text of the
  section outside it (notes, tables written by hand) and other sections are kept. A missing
  file or section is created.
  """
  begin, end = f"<!-- {title}: generated -->", f"<!-- {title}: end -->"
  block = f"{begin}\n{body.rstrip()}\n{end}"
  text = path.read_text() if path.exists() else "# Benchmarks\n"
  if begin in text and end in text:
    text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
  elif f"\n## {title}\n" in text:
    start = text.index(f"\n## {title}\n") + len(f"\n## {title}\n")
    text = text[:start] + "\n" + block + "\n" + text[start:]
  else:
    text = text.rstrip() + f"\n\n## {title}\n\n{block}\n"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)


def direct_flops(config) -> float | None:
  """FLOPs of one training step of `config` with every convolution computed directly.

  XLA:CPU's cost analysis of the step with XLA's own convolutions (`model.conv_impl="xla"`),
  lowered for the CPU whatever the backend: the model's arithmetic, as PyTorch computes it
  (GPU cost analyses leave out convolutions run as library calls, cuDNN).
  """
  import jax
  import jax.numpy as jnp
  from pix2pix_jax import models, state as state_lib, train
  config = config.copy_and_resolve_references()
  config.model.conv_impl = "xla"
  generator, discriminator = models.make_generator(config), models.make_discriminator(config)
  g_tx, d_tx = (state_lib.make_optimizer(config, 400) for _ in range(2))
  h = config.data.crop_size
  w = round(h * config.data.aspect_ratio)
  m = config.model
  abstract = jax.eval_shape(lambda: state_lib.create_train_state(
      config, generator, discriminator, g_tx, d_tx, (h, w), m.input_nc, m.output_nc))
  batch = {key: jax.ShapeDtypeStruct((config.batch_size, h, w, channels), jnp.float32)
           for key, channels in (("A", m.input_nc), ("B", m.output_nc))}
  step = train.bind_train_step(config, generator, discriminator, g_tx, d_tx)
  cost = jax.jit(step).trace(abstract, batch).lower(lowering_platforms=("cpu",)).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"]) if cost and "flops" in cost else None
