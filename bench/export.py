"""The exported generator's speed on CPU: which convolutions the any-size artifact should carry.

  python -m bench.export                 # quickstart model at 64 px and unet_256 at 256 px
  python -m bench.export --write         # also updates docs/benchmarks.md

Eval mode, random weights, batches of 1 and 4, timed in one process: the in-process generator
(`evaluate.generate` under jit, CPU forms chosen for the exact shape), the jax.export artifact
with symbolic batch and sides as `export.py` writes it (`model.conv_impl=auto`: the CPU forms,
chosen once for the smallest input), the same artifact with XLA's own convolutions
(`conv_impl=xla`), and the ONNX model under onnxruntime (when installed). Calls of the variants
are interleaved, `--repeats` rounds of one call each; the table gives the median and the fastest.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench import common


def _variants(config, size: int):
  import jax
  import jax.numpy as jnp
  from pix2pix_jax import evaluate, models

  def generator(impl):
    c = config.copy_and_resolve_references()
    c.model.conv_impl = impl
    return models.make_generator(c)

  module = generator("auto")
  variables = jax.jit(lambda: module.init({"params": jax.random.key(0)},
                                          jnp.zeros((1, size, size, 3)), train=False))()
  params, stats = variables["params"], variables["batch_stats"]
  key = jax.random.key(0)
  in_process = jax.jit(lambda x: evaluate.generate(module, params, stats, x, key, mode="eval"))

  def artifact(impl):
    g = generator(impl)

    def fn(x, seed, batch_index):
      weights = jax.lax.optimization_barrier((params, stats))
      k = jax.random.fold_in(jax.random.key(seed), batch_index)
      return evaluate.generate(g, *weights, x, k, mode="eval")

    m = 2**g.num_downs
    args = (jax.ShapeDtypeStruct(jax.export.symbolic_shape(f"b, {m}*h, {m}*w, 3"), jnp.float32),
            jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((), jnp.int32))
    exported = jax.export.deserialize(
        jax.export.export(jax.jit(fn), platforms=("cpu",))(*args).serialize())
    call = jax.jit(exported.call)
    return lambda x: call(x, jnp.int32(0), jnp.int32(0))

  variants = {"in process": in_process, "artifact, CPU forms": artifact("auto"),
              "artifact, XLA convs": artifact("xla")}
  try:
    import onnxruntime
    from pix2pix_jax.export import onnx_model
    model = onnx_model.build_model(module, variables, "eval", input_nc=3)
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    variants["ONNX (onnxruntime)"] = lambda x: session.run(
        None, {"images": np.asarray(x).transpose(0, 3, 1, 2)})[0]
  except ImportError:
    pass
  return variants


def measure(name: str, config, size: int, batches, repeats: int) -> list[str]:
  import jax
  variants = _variants(config, size)
  rows = []
  for batch in batches:
    x = jax.numpy.asarray(np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)),
                          jax.numpy.float32)
    times = {label: [] for label in variants}
    for fn in variants.values():
      jax.block_until_ready(fn(x))  # compile
    for _ in range(repeats):
      for label, fn in variants.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn(x))
        times[label].append(time.perf_counter() - t0)
    cells = [f"{np.median(t) * 1e3:.0f} ms ({min(t) * 1e3:.0f})" for t in times.values()]
    rows.append(f"| {name}, batch {batch} | " + " | ".join(cells) + " |")
    print(rows[-1], flush=True)
  return ["| model | " + " | ".join(variants) + " |",
          "|---" * (len(variants) + 1) + "|", *rows]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
  args = parser.parse_args()
  from configs import default, quickstart
  from pix2pix_jax import platform
  platform.configure()
  lines = measure("quickstart (6 levels, ngf 32), 64 px", quickstart.get_config(), 64, (1, 4),
                  args.repeats)
  lines += measure("unet_256, 256 px", default.get_config(), 256, (1, 4), args.repeats)[2:]
  body = "\n".join([f"Machine: {common.machine_line('jax')}.", "",
                    "Eval mode, median (fastest) per call, `python -m bench.export`:", "",
                    *lines])
  print(body)
  if args.write:
    common.write_section("Exported generator", body)


if __name__ == "__main__":
  main()
