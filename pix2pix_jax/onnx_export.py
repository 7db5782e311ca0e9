"""The trained generator as an ONNX model, for onnxruntime on servers, phones and in browsers.

The graph is built with onnx's helper API from the Flax generator's fields and variables, layer
for layer as `models.py` computes it (U-Net and ResNet generators), and checked with
`onnx.checker`. Its signature, in the authors' NCHW layout:

  images: float32[batch, input_nc, height, width] in [-1, 1]
      -> outputs: float32[batch, output_nc, height, width] in [-1, 1]

batch, height and width are dynamic; height and width must be multiples of the size multiple
(2**num_downs for the U-Net, 4 for the ResNet generators). Everything a caller needs (mode,
size multiple, direction, step, the mask inputs) is in the model's metadata_props.

Test-time mode, as for the jax.export artifact: the config's `eval_mode` at export time.
* eval: BatchNormalization with the running averages, no dropout: the usual inference graph.
* paper: every batch norm normalises with the statistics of the batch (mean and biased variance
  over batch, height and width, as PyTorch's BatchNorm in train mode), computed in the graph;
  dropout takes its masks as inputs, one boolean input per dropout layer ("dropout_<layer>",
  True = keep): kept values are divided by 1 - rate, the others are 0, as flax's Dropout. Masks
  drawn with P(True) = 1 - rate give the paper's test-time behaviour; the masks a JAX run drew
  give that run's outputs. onnxruntime's own random ops cannot reproduce JAX's random bits,
  hence inputs rather than a seed.

Weights and arithmetic are float32 whatever `compute_dtype` the run trained with.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Mapping

import numpy as np

from pix2pix_jax import atomic, errors, models

OPSET = 17  # every op used here is at least this old; onnxruntime-web and -mobile run it
FORMAT = "pix2pix-jax generator, ONNX"


def _import_onnx():
  try:
    import onnx
  except ImportError as e:
    raise errors.MissingExtraError("--format=onnx", "the onnx package", "onnx") from e
  return onnx


class _Graph:
  """Nodes, initialisers and inputs of one ONNX graph, with unique names."""

  def __init__(self, onnx):
    self.onnx, self.helper = onnx, onnx.helper
    self.nodes: list = []
    self.initializers: list = []
    self.inputs: list = []
    self._used: set[str] = set()

  def name(self, hint: str) -> str:
    name, k = hint, 1
    while name in self._used:
      k += 1
      name = f"{hint}_{k}"
    self._used.add(name)
    return name

  def const(self, hint: str, value) -> str:
    name = self.name(hint)
    self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
    return name

  def op(self, op_type: str, inputs: list[str], hint: str, **attributes) -> str:
    out = self.name(hint)
    self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=out, **attributes))
    return out

  def input(self, name: str, elem_type, shape: list) -> str:
    self._used.add(name)
    self.inputs.append(self.helper.make_tensor_value_info(name, elem_type, shape))
    return name


class _Builder:
  """Emits the generator's layers into a `_Graph` (NCHW), in the given test-time mode."""

  def __init__(self, graph: _Graph, variables: Mapping[str, Any], mode: str):
    self.g, self.mode = graph, mode
    self.params = variables["params"]
    self.stats = variables.get("batch_stats", {})
    self.masks: list[tuple[str, list]] = []

  def _leaf(self, tree, path: tuple[str, ...], leaf: str) -> np.ndarray:
    for key in path:
      tree = tree[key]
    return np.asarray(tree[leaf], np.float32)

  def _conv_inputs(self, x: str, path: tuple[str, ...], axes: tuple[int, ...]):
    """[x, weight (the kernel transposed by `axes`), bias if the layer has one], kernel size."""
    kernel = self._leaf(self.params, path, "kernel")
    inputs = [x, self.g.const("/".join(path) + "/weight", kernel.transpose(*axes))]
    if "bias" in self._node(path):
      inputs.append(self.g.const("/".join(path) + "/bias", self._leaf(self.params, path, "bias")))
    return inputs, kernel.shape[0]

  def conv(self, x: str, path: tuple[str, ...], stride: int, padding: int) -> str:
    """PyTorch Conv2d(k, stride, padding): the HWIO kernel as OIHW."""
    inputs, k = self._conv_inputs(x, path, (3, 2, 0, 1))
    return self.g.op("Conv", inputs, "/".join(path), kernel_shape=[k, k],
                     strides=[stride, stride], pads=[padding] * 4)

  def conv_transpose(self, x: str, path: tuple[str, ...], output_padding: int = 0) -> str:
    """PyTorch ConvTranspose2d(k, 2, 1, output_padding); kernel (kh, kw, I, O) as (I, O, kh, kw)."""
    inputs, k = self._conv_inputs(x, path, (2, 3, 0, 1))
    return self.g.op("ConvTranspose", inputs, "/".join(path), kernel_shape=[k, k],
                     strides=[2, 2], pads=[1, 1, 1, 1],
                     output_padding=[output_padding, output_padding])

  def _node(self, path: tuple[str, ...]) -> Mapping[str, Any]:
    tree = self.params
    for key in path:
      tree = tree[key]
    return tree

  def norm(self, x: str, kind: str, path: tuple[str, ...], channels: int) -> str:
    """layers.BatchNorm (running averages in eval mode, batch statistics in paper mode),
    InstanceNorm (no affine parameters: scale 1, bias 0) or nothing."""
    name = "/".join(path)
    if kind == "none":
      return x
    if kind == "instance":
      unit = [self.g.const(f"{name}/scale", np.ones(channels, np.float32)),
              self.g.const(f"{name}/bias", np.zeros(channels, np.float32))]
      return self.g.op("InstanceNormalization", [x, *unit], name, epsilon=1e-5)
    scale = self._leaf(self.params, path, "scale")
    bias = self._leaf(self.params, path, "bias")
    if self.mode == "eval":
      inputs = [x, self.g.const(f"{name}/scale", scale), self.g.const(f"{name}/bias", bias),
                self.g.const(f"{name}/mean", self._leaf(self.stats, path, "mean")),
                self.g.const(f"{name}/var", self._leaf(self.stats, path, "var"))]
      return self.g.op("BatchNormalization", inputs, name, epsilon=1e-5)
    # Paper mode: the batch's statistics, as layers.BatchNorm computes them.
    c11 = lambda a: a.reshape(1, -1, 1, 1)
    mean = self.g.op("ReduceMean", [x], f"{name}/batch_mean", axes=[0, 2, 3], keepdims=1)
    centred = self.g.op("Sub", [x, mean], f"{name}/centred")
    var = self.g.op("ReduceMean", [self.g.op("Mul", [centred, centred], f"{name}/square")],
                    f"{name}/batch_var", axes=[0, 2, 3], keepdims=1)
    std = self.g.op("Sqrt", [self.g.op("Add", [var, self.g.const(f"{name}/epsilon",
                                                                 np.float32(1e-5))],
                                       f"{name}/var_eps")], f"{name}/std")
    mul = self.g.op("Div", [self.g.const(f"{name}/scale", c11(scale)), std], f"{name}/mul")
    shift = self.g.op("Sub", [self.g.const(f"{name}/bias", c11(bias)),
                              self.g.op("Mul", [mean, mul], f"{name}/mean_mul")],
                      f"{name}/shift")
    return self.g.op("Add", [self.g.op("Mul", [x, mul], f"{name}/scaled"), shift], name)

  def dropout(self, x: str, layer: str, rate: float, shape: list) -> str:
    """Paper mode: kept values / (1 - rate), the others 0; the mask is an input."""
    if self.mode == "eval":
      return x
    mask = self.g.input(f"dropout_{layer}", self.g.onnx.TensorProto.BOOL, shape)
    self.masks.append((mask, shape))
    kept = self.g.op("Div", [x, self.g.const(f"{layer}/keep", np.float32(1.0 - rate))],
                     f"{layer}/kept")
    return self.g.op("Where", [mask, kept, self.g.const(f"{layer}/zero", np.float32(0.0))],
                     f"{layer}/dropout")

  def pad(self, x: str, pad: int, padding_type: str, hint: str) -> str:
    """resnet_layers.pad2d: reflection, replication ('edge') or zeros on H and W."""
    mode = {"reflect": "reflect", "replicate": "edge", "zero": "constant"}[padding_type]
    pads = self.g.const(f"{hint}/pads", np.array([0, 0, pad, pad, 0, 0, pad, pad], np.int64))
    return self.g.op("Pad", [x, pads], hint, mode=mode)


def _spatial(factor: int) -> list[str]:
  if factor == 1:
    return ["height", "width"]
  return [f"height/{factor}", f"width/{factor}"]


def _unet(b: _Builder, module: models.UNetGenerator, x: str) -> str:
  """`models.UNetGenerator.__call__`, in ONNX ops."""
  n = module.num_downs
  widths = [module.ngf * min(2**i, 8) for i in range(n)]
  g, h, skips = b.g, x, []
  for i in range(n):
    if i > 0:
      h = g.op("LeakyRelu", [h], f"down_{i}/leaky_relu", alpha=0.2)
    h = b.conv(h, (f"down_{i}",), 2, 1)
    if 0 < i < n - 1:
      h = b.norm(h, module.norm, (f"down_{i}_norm",), widths[i])
    skips.append(h)
  for i in reversed(range(n)):
    h = g.op("Relu", [h], f"up_{i}/relu")
    if i == 0:
      return g.op("Tanh", [b.conv_transpose(h, ("up_0",))], "outputs")
    h = b.norm(b.conv_transpose(h, (f"up_{i}",)), module.norm, (f"up_{i}_norm",),
               widths[i - 1])
    if module.use_dropout and 4 <= i <= n - 2:
      h = b.dropout(h, f"up_{i}", module.dropout_rate, ["batch", widths[i - 1], *_spatial(2**i)])
    h = g.op("Concat", [skips[i - 1], h], f"up_{i}/skip", axis=1)
  raise AssertionError("unreachable")


def _resnet(b: _Builder, module: models.ResnetGenerator, x: str) -> str:
  """`models.ResnetGenerator.__call__`, in ONNX ops."""
  g, ngf, norm = b.g, module.ngf, module.norm
  relu = lambda h, hint: g.op("Relu", [h], hint)
  h = b.conv(b.pad(x, 3, "reflect", "stem/pad"), ("stem",), 1, 0)
  h = relu(b.norm(h, norm, ("stem_norm",), ngf), "stem/relu")
  for i in (1, 2):
    h = relu(b.norm(b.conv(h, (f"down_{i}",), 2, 1), norm, (f"down_{i}_norm",), ngf * 2**i),
             f"down_{i}/relu")
  for k in range(module.n_blocks):
    block, r = f"block_{k}", h
    for j in range(2):
      r = b.pad(r, 1, module.padding_type, f"{block}/pad_{j}")
      r = b.norm(b.conv(r, (block, f"conv_{j}"), 1, 0), norm, (block, f"norm_{j}"), 4 * ngf)
      if j == 0:
        r = relu(r, f"{block}/relu")
        if module.use_dropout:
          r = b.dropout(r, block, module.dropout_rate, ["batch", 4 * ngf, *_spatial(4)])
    h = g.op("Add", [h, r], f"{block}/residual")
  for i in (1, 2):
    h = b.conv_transpose(h, (f"up_{i}",), output_padding=1)
    h = relu(b.norm(h, norm, (f"up_{i}_norm",), ngf * 2**(2 - i)), f"up_{i}/relu")
  h = b.conv(b.pad(h, 3, "reflect", "out/pad"), ("out",), 1, 0)
  return g.op("Tanh", [h], "outputs")


def build_model(generator, variables: Mapping[str, Any], mode: str, *, input_nc: int,
                metadata: Mapping[str, Any] | None = None, opset: int = OPSET):
  """The ONNX ModelProto of a Flax generator of this package with `variables`
  ({'params', 'batch_stats'}) in test-time `mode` ('paper' or 'eval')."""
  onnx = _import_onnx()
  if mode not in ("paper", "eval"):
    raise ValueError(f"eval mode must be 'paper' or 'eval', got {mode!r}")
  graph = _Graph(onnx)
  builder = _Builder(graph, variables, mode)
  float32 = onnx.TensorProto.FLOAT
  images = graph.input("images", float32, ["batch", input_nc, "height", "width"])
  if isinstance(generator, models.UNetGenerator):
    out = _unet(builder, generator, images)
  elif isinstance(generator, models.ResnetGenerator):
    out = _resnet(builder, generator, images)
  else:
    raise ValueError(f"no ONNX export for {type(generator).__name__}; the U-Net and ResNet "
                     "generators are supported")
  outputs = [onnx.helper.make_tensor_value_info(
      out, float32, ["batch", generator.output_nc, "height", "width"])]
  model = onnx.helper.make_model(
      onnx.helper.make_graph(graph.nodes, "pix2pix_generator", graph.inputs, outputs,
                             graph.initializers),
      opset_imports=[onnx.helper.make_opsetid("", opset)], producer_name="pix2pix-jax")
  meta = {"format": FORMAT, "mode": mode, "layout": "NCHW",
          "dropout_masks": ", ".join(f"{name}: bool[{', '.join(map(str, shape))}]"
                                     for name, shape in builder.masks) or "none",
          **(metadata or {})}
  onnx.helper.set_model_props(model, {k: str(v) for k, v in meta.items()})
  onnx.checker.check_model(model)
  return model


def export_onnx(translator, path: str | os.PathLike, *, opset: int = OPSET) -> pathlib.Path:
  """Writes `translator`'s generator (an `inference.Translator`) as an ONNX model to `path`."""
  onnx = _import_onnx()
  path = pathlib.Path(path)
  metadata = {"input_nc": translator.input_nc, "output_nc": translator.output_nc,
              "size_multiple": translator.size_multiple, "crop_size": translator.crop_size,
              "direction": translator.direction, "step": translator.step}
  model = build_model(translator.generator,
                      {"params": translator.g_params, "batch_stats": translator.g_batch_stats},
                      translator.mode, input_nc=translator.input_nc, metadata=metadata,
                      opset=opset)
  with atomic.atomic_path(path) as temporary:
    onnx.save_model(model, os.fspath(temporary))
  return path
