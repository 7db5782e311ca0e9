"""The generator as a web page that runs it in the browser: no server, no Python.

`launch.py --mode=export --format=web --output DIR` writes a folder for any static host:
index.html, page.js, page.css, the generator as ONNX with int8 weights (dequantised inside the
graph) in parts under GitHub's 50 MB warning, model.json (what the page needs to know), a
sample input, and the files of onnxruntime-web the page loads, with their licence. The
runtime comes from the npm registry at the version `web/package-lock.json` pins, checked
against its integrity hash: `python -m pix2pix_jax.export.web_page --fetch_runtime`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import pathlib
import sys
import tarfile
import urllib.request

import numpy as np
from absl import flags, logging
from etils import epath

from pix2pix_jax import atomic, cli, errors, storage

_HERE = pathlib.Path(__file__).resolve().parent
PAGE_FILES = ("index.html", "page.js", "page.css")
LOCKFILE = _HERE.parents[1] / "web" / "package-lock.json"
# The onnxruntime-web files the page loads: the WebGPU build, whose WebAssembly also runs the
# model on the CPU where WebGPU is missing.
RUNTIME_FILES = ("ort.webgpu.min.js", "ort-wasm-simd-threaded.asyncify.mjs",
                 "ort-wasm-simd-threaded.asyncify.wasm")
RUNTIME_LICENCE = "LICENSE-onnxruntime-web.txt"
PART_BYTES = 40 * 2**20  # model parts stay under GitHub's 50 MB warning
WEIGHT_FORMATS = ("int8", "float16", "float32")
_MIT = """MIT License

Copyright (c) Microsoft Corporation.

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


# ---------------------------------------------------------------------------- the runtime

class RuntimeMissingError(errors.Pix2pixError):
  """onnxruntime-web has not been fetched: the message gives the command that gets it."""


def pinned_runtime() -> tuple[str, str]:
  """(version, npm integrity) of onnxruntime-web in web/package-lock.json."""
  lock = json.loads(LOCKFILE.read_text())
  entry = lock["packages"]["node_modules/onnxruntime-web"]
  return entry["version"], entry["integrity"]


def runtime_dir() -> pathlib.Path:
  """Where the fetched runtime files are kept (per user, per version)."""
  version, _ = pinned_runtime()
  cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
  return cache / "pix2pix_jax" / f"onnxruntime-web-{version}"


def _npm_dist() -> pathlib.Path:
  """Where `npm ci` in web/ puts the runtime files."""
  return LOCKFILE.parent / "node_modules" / "onnxruntime-web" / "dist"


def _complete(folder: pathlib.Path) -> bool:
  return all((folder / name).is_file() for name in RUNTIME_FILES)


def fetch_runtime() -> pathlib.Path:
  """Downloads the pinned onnxruntime-web from the npm registry, checks its integrity hash and
  keeps the files the page loads; returns their folder."""
  version, integrity = pinned_runtime()
  target = runtime_dir()
  if _complete(target):
    return target
  url = f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{version}.tgz"
  logging.info("Downloading %s", url)
  with urllib.request.urlopen(url, timeout=120) as response:
    data = response.read()
  algorithm, expected = integrity.split("-", 1)
  actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
  if actual != expected:
    raise errors.InputError(f"{url}: its {algorithm} ({actual}) is not the one "
                            f"web/package-lock.json pins ({expected}); nothing was kept")
  with atomic.atomic_path(target) as temporary, tarfile.open(fileobj=io.BytesIO(data)) as tar:
    temporary.mkdir(parents=True)
    for name in RUNTIME_FILES:
      (temporary / name).write_bytes(tar.extractfile(f"package/dist/{name}").read())
    (temporary / "package.json").write_bytes(tar.extractfile("package/package.json").read())
  return target


def _runtime_files() -> pathlib.Path:
  for folder in (_npm_dist(), runtime_dir()):
    if _complete(folder):
      return folder
  version, _ = pinned_runtime()
  raise RuntimeMissingError(
      f"--format=web needs onnxruntime-web {version}, which is not here yet: "
      "python -m pix2pix_jax.export.web_page --fetch_runtime (or npm ci in web/)")


# ---------------------------------------------------------------------------- the weights

def reduce_weights(model, weights: str = "int8"):
  """The ONNX model with its convolution weights stored as int8 with one scale per output
  channel and a DequantizeLinear in the graph ("int8"), as float16 with a Cast ("float16"), or
  as they are ("float32"). Biases and normalisation constants stay float32."""
  if weights not in WEIGHT_FORMATS:
    raise errors.UsageError(f"weights must be one of {WEIGHT_FORMATS}, got {weights!r}")
  if weights == "float32":
    return model
  import onnx  # pylint: disable=g-import-not-at-top
  from onnx import numpy_helper  # pylint: disable=g-import-not-at-top
  graph = model.graph
  # Weight inputs of Conv (OIHW: output channels on axis 0) and ConvTranspose (IOHW: axis 1).
  axes = {node.input[1]: 0 if node.op_type == "Conv" else 1 for node in graph.node
          if node.op_type in ("Conv", "ConvTranspose")}
  kept, added_nodes = [], []
  for tensor in graph.initializer:
    if tensor.name not in axes:
      kept.append(tensor)
      continue
    w = numpy_helper.to_array(tensor).astype(np.float32)
    stored = f"{tensor.name}/{weights}"
    if weights == "float16":
      kept.append(numpy_helper.from_array(w.astype(np.float16), stored))
      added_nodes.append(onnx.helper.make_node("Cast", [stored], [tensor.name],
                                               to=onnx.TensorProto.FLOAT))
      continue
    axis = axes[tensor.name]
    reduce = tuple(a for a in range(w.ndim) if a != axis)
    scale = np.max(np.abs(w), axis=reduce) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    kept += [numpy_helper.from_array(q, stored),
             numpy_helper.from_array(scale, f"{tensor.name}/scale"),
             numpy_helper.from_array(np.zeros_like(q, shape=scale.shape), f"{tensor.name}/zero")]
    added_nodes.append(onnx.helper.make_node(
        "DequantizeLinear", [stored, f"{tensor.name}/scale", f"{tensor.name}/zero"],
        [tensor.name], axis=axis))
  del graph.initializer[:]
  graph.initializer.extend(kept)
  nodes = added_nodes + list(graph.node)
  del graph.node[:]
  graph.node.extend(nodes)
  onnx.helper.set_model_props(
      model, {**{p.key: p.value for p in model.metadata_props}, "weights": weights})
  onnx.checker.check_model(model)
  return model


# ---------------------------------------------------------------------------- the page

def write_page(translator, output, *, palette, sample: np.ndarray, title: str,
               weights: str = "int8") -> epath.Path:
  """The folder `output` (local or gs://) holding the page for `translator`'s generator."""
  from pix2pix_jax import evaluate  # pylint: disable=g-import-not-at-top
  from pix2pix_jax.export import onnx_model  # pylint: disable=g-import-not-at-top
  runtime = _runtime_files()
  model = onnx_model.build_model(translator.generator, translator.variables, translator.mode,
                                 input_nc=translator.input_nc)
  data = reduce_weights(model, weights).SerializeToString()
  parts = [data[i:i + PART_BYTES] for i in range(0, len(data), PART_BYTES)]
  names = [f"model.{k}.onnx" if len(parts) > 1 else "model.onnx" for k in range(len(parts))]
  masks = [{"name": i.name, "shape": [d.dim_param or d.dim_value
                                      for d in i.type.tensor_type.shape.dim],
            "rate": float(translator.generator.dropout_rate)}
           for i in model.graph.input if i.name != "images"]
  meta = {
      "title": title, "mode": translator.mode, "size": [translator.crop_size] * 2,
      "input_nc": translator.input_nc, "output_nc": translator.output_nc,
      "direction": translator.direction, "step": translator.step, "weights": weights,
      "description": f"checkpoint {translator.step}, {weights} weights",
      "model_parts": names, "masks": masks,
      "palette": {"kind": palette.kind, "names": list(palette.names),
                  "colours": [list(c) for c in palette.colours],
                  "background": list(palette.background)},
  }
  output = storage.resolve(output, "--output")
  with atomic.atomic_path(output) as folder:
    folder.mkdir(parents=True)
    for name in PAGE_FILES:
      (folder / name).write_text((_HERE / "web" / name).read_text().replace("TITLE", title))
    for name, part in zip(names, parts):
      (folder / name).write_bytes(part)
    (folder / "model.json").write_text(json.dumps(meta, indent=1))
    evaluate.save_png(folder / "sample.png", sample)
    for name in RUNTIME_FILES:
      (folder / name).write_bytes((runtime / name).read_bytes())
    version, _ = pinned_runtime()
    (folder / RUNTIME_LICENCE).write_text(f"onnxruntime-web {version} (npm), {_MIT}")
  return output


def export(config, workdir: str, output: str, step: int | None = None, *,
           eval_mode: str = "eval") -> epath.Path:
  """`launch.py --mode=export --format=web`: the page of the run's generator, in eval mode
  (running averages, no dropout) unless --config.eval_mode=paper asks for the paper's (batch
  statistics, dropout masks drawn by the page at each translation)."""
  from pix2pix_jax import canvas, inference  # pylint: disable=g-import-not-at-top
  from pix2pix_jax.export import onnx_model  # pylint: disable=g-import-not-at-top
  onnx_model.import_onnx("--format=web")  # what the export needs, before the checkpoint
  _runtime_files()
  config = config.copy_and_resolve_references()
  config.eval_mode = eval_mode
  translator = inference.translator(config, workdir, step)
  sample, _ = canvas.first_input(config, None, translator.crop_size, translator.size_multiple)
  path = write_page(translator, output, palette=canvas.palette_for(config), sample=sample,
                    title=storage.resolve(workdir, "--workdir").name)
  print(f"exported the generator of checkpoint {translator.step} ({translator.mode} mode) as a "
        f"web page in {path}: "
        f"serve it (cd {path} && python -m http.server) and open http://localhost:8000",
        flush=True)
  return path


def main(argv=None) -> int:
  """`python -m pix2pix_jax.export.web_page --fetch_runtime`: gets onnxruntime-web."""

  def run(rest):
    if len(rest) > 1 or not FLAGS.fetch_runtime:
      raise errors.UsageError("pass --fetch_runtime to download the pinned onnxruntime-web")
    print(f"onnxruntime-web is in {fetch_runtime()}")

  return cli.run(run, sys.argv if argv is None else argv, FLAGS)


FLAGS = cli.new_flag_values()
flags.DEFINE_bool("fetch_runtime", False, "Download the pinned onnxruntime-web (npm registry).",
                  flag_values=FLAGS)

if __name__ == "__main__":
  sys.exit(main())
