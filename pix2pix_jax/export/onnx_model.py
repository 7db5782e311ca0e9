"""The trained generator as an ONNX model, lowered from the Flax module's own computation.

The generator is traced once (with XLA's own convolutions) and every jaxpr equation becomes
ONNX operators, so the Flax module stays the only definition of a network and any generator
built from the operations below exports. The model takes and returns NCHW images in [-1, 1]
(the authors' layout), with dynamic batch and sides; `build_model` describes it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.extend import core as jax_core
import numpy as np
from etils import epath

from pix2pix_jax import atomic, errors, storage

OPSET = 17  # every operator used here is at least this old; onnxruntime-web and -mobile run it
FORMAT = "pix2pix-jax generator, ONNX"
_NCHW = (0, 3, 1, 2)  # the physical axes of an NHWC activation: physical i holds logical _NCHW[i]
_END = np.iinfo(np.int64).max

# jaxpr primitive → (ONNX operator, the same on numpy constants).
_ELEMENTWISE = {
    "add": ("Add", np.add), "sub": ("Sub", np.subtract), "mul": ("Mul", np.multiply),
    "div": ("Div", np.divide), "max": ("Max", np.maximum), "min": ("Min", np.minimum),
    "pow": ("Pow", np.power), "neg": ("Neg", np.negative), "abs": ("Abs", np.abs),
    "tanh": ("Tanh", np.tanh), "exp": ("Exp", np.exp), "log": ("Log", np.log),
    "sqrt": ("Sqrt", np.sqrt), "logistic": ("Sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    "ge": ("GreaterOrEqual", np.greater_equal), "gt": ("Greater", np.greater),
    "le": ("LessOrEqual", np.less_equal), "lt": ("Less", np.less), "eq": ("Equal", np.equal),
    "and": ("And", np.logical_and), "or": ("Or", np.logical_or), "not": ("Not", np.logical_not),
}


def import_onnx(needed_by: str = "--format=onnx"):
  """The onnx package, or the one-line error naming `needed_by` and the extra to install."""
  try:
    import onnx
  except ImportError as e:
    raise errors.MissingExtraError(needed_by, "the onnx package", "onnx") from e
  return onnx


@dataclasses.dataclass(frozen=True)
class _Tensor:
  """A value computed in the graph: its name, its ONNX shape (size 1 where a broadcast is left
  to ONNX) and `perm`, the logical (jaxpr) axis each ONNX axis holds."""
  name: str
  shape: tuple[int, ...]
  perm: tuple[int, ...]
  sum_of: tuple | None = None  # (input, ONNX axes, element count, keepdims) of a ReduceSum

  def axis(self, logical: int) -> int:
    return self.perm.index(logical)


def _default_perm(rank: int) -> tuple[int, ...]:
  return _NCHW if rank == 4 else tuple(range(rank))


def _sub_jaxpr(eqn):
  """(jaxpr, consts) of a call-like equation (jit, custom_jvp_call, ...), else None."""
  for key in ("jaxpr", "call_jaxpr"):
    sub = eqn.params.get(key)
    if sub is not None and hasattr(sub, "eqns"):
      return sub, []
    if sub is not None and hasattr(sub, "jaxpr"):
      return sub.jaxpr, sub.consts
  return None


class _Lowering:
  """Interprets a jaxpr, folding constants with numpy and emitting ONNX nodes for the rest."""

  def __init__(self, onnx):
    self.onnx = onnx
    self.nodes: list = []
    self.initializers: list = []
    self._used: set[str] = set()

  # ---- names, constants, nodes
  def name(self, hint: str) -> str:
    name, k = hint, 1
    while name in self._used:
      k += 1
      name = f"{hint}_{k}"
    self._used.add(name)
    return name

  def initializer(self, value: np.ndarray, hint: str) -> str:
    name = self.name(hint)
    self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
    return name

  def node(self, op: str, inputs: list[str], hint: str, **attributes) -> str:
    out = self.name(hint)
    self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=out, **attributes))
    return out

  def operand(self, value, perm: tuple[int, ...], hint: str) -> str:
    """The ONNX name of a value; a constant is laid out as the tensor it meets (`perm`)."""
    if isinstance(value, _Tensor):
      return value.name
    value = np.asarray(value)
    if value.ndim == len(perm) and value.ndim > 1:
      value = value.transpose(perm)
    return self.initializer(value, hint)

  def ints(self, values, hint: str) -> str:
    return self.initializer(np.asarray(values, np.int64), hint)

  # ---- interpretation
  def run(self, jaxpr, consts, args) -> list:
    env: dict = {}

    def read(var):
      if isinstance(var, jax_core.Literal):
        return np.asarray(var.val, dtype=var.aval.dtype)
      return env[var]

    for var, value in zip(jaxpr.constvars, consts):
      env[var] = value if isinstance(value, _Tensor) else np.asarray(value)
    for var, value in zip(jaxpr.invars, args):
      env[var] = value
    for eqn in jaxpr.eqns:
      inputs = [read(v) for v in eqn.invars]
      sub = _sub_jaxpr(eqn)
      if sub is not None:
        outputs = self.run(sub[0], sub[1], inputs)
      elif not any(isinstance(v, _Tensor) for v in inputs):
        outputs = self.fold(eqn, inputs)
      else:
        outputs = self.lower(eqn, inputs)
      if not eqn.primitive.multiple_results:
        outputs = [outputs]
      for var, value in zip(eqn.outvars, outputs):
        env[var] = value
    return [read(v) for v in jaxpr.outvars]

  def fold(self, eqn, inputs):
    """An equation on constants only, computed now (the weights' part of the graph)."""
    prim, params = eqn.primitive.name, eqn.params
    if prim == "broadcast_in_dim":  # size-1 axes stay: never materialise a probe-sized array
      return np.reshape(inputs[0], _aligned(inputs[0].shape, params))
    if prim in _ELEMENTWISE:
      return _ELEMENTWISE[prim][1](*inputs).astype(eqn.outvars[0].aval.dtype)
    if prim == "rsqrt":
      return (1 / np.sqrt(inputs[0])).astype(inputs[0].dtype)
    if prim == "square":
      return inputs[0] * inputs[0]
    if prim == "integer_pow":
      return inputs[0] ** params["y"]
    if prim == "convert_element_type":
      return inputs[0].astype(params["new_dtype"])
    if prim == "select_n":
      return np.choose(np.asarray(inputs[0], np.int32), inputs[1:])
    full = [np.broadcast_to(x, v.aval.shape) for x, v in zip(inputs, eqn.invars)]
    if sum(x.size for x in full) > 2**26:
      raise errors.InputError(f"ONNX export: folding {prim} would materialise "
                              f"{sum(x.size for x in full):,} values")
    return jax.tree.map(np.asarray, eqn.primitive.bind(*full, **params))

  def lower(self, eqn, inputs):
    """An equation on a computed value, as ONNX nodes."""
    prim, params, hint = eqn.primitive.name, eqn.params, eqn.primitive.name
    tensor = next(v for v in inputs if isinstance(v, _Tensor))
    if prim == "div" and isinstance(inputs[0], _Tensor) and inputs[0].sum_of and not \
        isinstance(inputs[1], _Tensor) and inputs[1].size == 1:
      source, axes, count, keepdims = inputs[0].sum_of
      if float(inputs[1]) == float(np.float32(count)):  # a mean: no probe size in the graph
        out = self.node("ReduceMean", [source], "mean", axes=list(axes), keepdims=keepdims)
        return dataclasses.replace(inputs[0], name=out, sum_of=None)
    if prim in _ELEMENTWISE or prim in ("rsqrt", "square", "integer_pow", "select_n"):
      return self._elementwise(eqn, inputs, tensor)
    if prim == "convert_element_type":
      to = self.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(params["new_dtype"]))
      return dataclasses.replace(tensor, name=self.node("Cast", [tensor.name], hint, to=to),
                                 sum_of=None)
    if prim == "broadcast_in_dim":
      return self._broadcast(tensor, params)
    if prim == "reduce_sum":
      axes = sorted(tensor.axis(a) for a in params["axes"])
      out = self.node("ReduceSum", [tensor.name, self.ints(axes, "axes")], hint, keepdims=0)
      kept = [i for i in range(len(tensor.shape)) if i not in axes]
      logical = sorted(tensor.perm[i] for i in kept)
      count = math.prod(eqn.invars[0].aval.shape[a] for a in params["axes"])
      return _Tensor(out, tuple(tensor.shape[i] for i in kept),
                     tuple(logical.index(tensor.perm[i]) for i in kept),
                     sum_of=(tensor.name, tuple(axes), count, 0))
    if prim == "concatenate":
      names = [self.operand(v, tensor.perm, "concat_input") for v in inputs]
      if any(isinstance(v, _Tensor) and v.perm != tensor.perm for v in inputs):
        raise _unsupported(prim, "operands in different layouts")
      axis = tensor.axis(params["dimension"])
      shape = list(tensor.shape)
      shape[axis] = sum(_physical_shape(v, tensor.perm)[axis] for v in inputs)
      return _Tensor(self.node("Concat", names, hint, axis=axis), tuple(shape), tensor.perm)
    if prim == "conv_general_dilated":
      return self._conv(eqn, inputs)
    if prim in ("slice", "rev"):
      return self._slice(prim, params, tensor, eqn.invars[0].aval.shape)
    if prim == "pad":
      config = params["padding_config"]
      if any(interior or lo < 0 or hi < 0 for lo, hi, interior in config):
        raise _unsupported(prim, "negative or interior padding")
      order = [config[a] for a in tensor.perm]
      pads = [lo for lo, _, _ in order] + [hi for _, hi, _ in order]
      value = self.operand(np.asarray(inputs[1]).reshape(()), (), "pad_value")
      out = self.node("Pad", [tensor.name, self.ints(pads, "pads"), value], hint,
                      mode="constant")
      return _Tensor(out, tuple(s + lo + hi for s, (lo, hi, _) in
                                zip(tensor.shape, order)), tensor.perm)
    raise _unsupported(prim)

  def _elementwise(self, eqn, inputs, tensor):
    prim, perm = eqn.primitive.name, tensor.perm
    if any(isinstance(v, _Tensor) and v.perm != perm for v in inputs):
      raise _unsupported(prim, "operands in different layouts")
    names = [self.operand(v, perm, f"{prim}_constant") for v in inputs]
    shape = np.broadcast_shapes(*(_physical_shape(v, perm) for v in inputs))
    if prim == "rsqrt":
      out = self.node("Reciprocal", [self.node("Sqrt", names, "sqrt")], prim)
    elif prim == "square":
      out = self.node("Mul", [names[0], names[0]], prim)
    elif prim == "integer_pow":
      exponent = self.operand(np.asarray(eqn.params["y"], eqn.invars[0].aval.dtype), (),
                              "exponent")
      out = self.node("Pow", [names[0], exponent], prim)
    elif prim == "select_n":  # select_n(which, case0, case1) → Where(which, case1, case0)
      if len(names) != 3:
        raise _unsupported(prim, "more than two cases")
      which = names[0]
      if eqn.invars[0].aval.dtype != np.bool_:
        which = self.node("Cast", [which], "which", to=self.onnx.TensorProto.BOOL)
      out = self.node("Where", [which, names[2], names[1]], prim)
    else:
      out = self.node(_ELEMENTWISE[prim][0], names, prim)
    return _Tensor(out, tuple(shape), perm)

  def _broadcast(self, tensor: _Tensor, params) -> _Tensor:
    """broadcast_in_dim without copies: only size-1 axes are added; ONNX broadcasts them."""
    rank, dims = len(params["shape"]), params["broadcast_dimensions"]
    logical_in = [tensor.perm[i] for i in range(len(tensor.shape))]  # ONNX order → logical
    for perm in (tensor.perm if len(tensor.perm) == rank else None, _default_perm(rank),
                 tuple(range(rank))):
      if perm is None:
        continue
      positions = [perm.index(dims[a]) for a in logical_in]
      if positions == sorted(positions):
        break
    else:
      raise _unsupported("broadcast_in_dim", "the operand's axes would need reordering")
    shape = [1] * rank
    for j, position in enumerate(positions):
      shape[position] = tensor.shape[j]
    new_axes = [i for i in range(rank) if i not in positions]
    if not new_axes:
      return _Tensor(tensor.name, tuple(shape), perm, tensor.sum_of)
    out = self.node("Unsqueeze", [tensor.name, self.ints(new_axes, "axes")], "broadcast")
    sum_of = None
    if tensor.sum_of and tuple(new_axes) == tensor.sum_of[1]:  # a sum with keepdims
      sum_of = (*tensor.sum_of[:3], 1)
    return _Tensor(out, tuple(shape), perm, sum_of)

  def _conv(self, eqn, inputs) -> _Tensor:
    params = eqn.params
    x, kernel = inputs
    if isinstance(kernel, _Tensor) or params["feature_group_count"] != 1 or \
        params["batch_group_count"] != 1:
      raise _unsupported("conv_general_dilated", "computed kernels or grouped convolutions")
    numbers = params["dimension_numbers"]
    if x.perm != tuple(numbers.lhs_spec):
      raise _unsupported("conv_general_dilated", f"input layout {x.perm}")
    kernel = np.asarray(kernel).transpose(numbers.rhs_spec)  # OIHW
    k = kernel.shape[2:]
    (lo_h, hi_h), (lo_w, hi_w) = params["padding"]
    if all(d == 1 for d in params["lhs_dilation"]):
      out = self.node("Conv", [x.name, self.initializer(kernel, "weight")], "conv",
                      kernel_shape=list(k), strides=list(params["window_strides"]),
                      dilations=list(params["rhs_dilation"]), pads=[lo_h, lo_w, hi_h, hi_w])
    else:
      # A convolution of the stride-dilated input is a transposed convolution with the
      # spatially flipped kernel: ConvTranspose pads by k - 1 - lo before and k - 1 - hi after
      # (an output_padding where that is negative).
      if any(s != 1 for s in params["window_strides"]) or \
          any(d != 1 for d in params["rhs_dilation"]):
        raise _unsupported("conv_general_dilated", "input and window dilation together")
      begin = [k[0] - 1 - lo_h, k[1] - 1 - lo_w]
      end = [k[0] - 1 - hi_h, k[1] - 1 - hi_w]
      if min(begin) < 0:
        raise _unsupported("conv_general_dilated", "padding wider than the kernel")
      weight = np.flip(kernel, (2, 3)).transpose(1, 0, 2, 3)  # (I, O, kh, kw)
      out = self.node("ConvTranspose", [x.name, self.initializer(weight, "weight")],
                      "conv_transpose", kernel_shape=list(k),
                      strides=list(params["lhs_dilation"]),
                      pads=[max(e, 0) for e in begin] + [max(e, 0) for e in end],
                      output_padding=[max(-e, 0) for e in end])
    shape = eqn.outvars[0].aval.shape
    return _Tensor(out, tuple(shape[a] for a in numbers.out_spec), tuple(numbers.out_spec))

  def _slice(self, prim, params, tensor: _Tensor, logical_shape) -> _Tensor:
    """slice (with edges counted from the nearer end) or rev (a slice with step -1)."""
    starts, ends, axes, steps, shape = [], [], [], [], list(tensor.shape)
    if prim == "rev":
      for a in params["dimensions"]:
        starts.append(-1)
        ends.append(-_END - 1)
        axes.append(tensor.axis(a))
        steps.append(-1)
    else:
      strides = params["strides"] or (1,) * len(logical_shape)
      for a, (start, limit, stride) in enumerate(zip(params["start_indices"],
                                                     params["limit_indices"], strides)):
        size = logical_shape[a]
        if (start, limit, stride) == (0, size, 1):
          continue
        near = lambda i: i if i <= size // 2 else i - size  # noqa: E731
        starts.append(near(start))
        ends.append(_END if limit == size else near(limit))
        axes.append(tensor.axis(a))
        steps.append(stride)
        shape[tensor.axis(a)] = len(range(start, limit, stride))
    if not axes:
      return tensor
    out = self.node("Slice", [tensor.name, self.ints(starts, "starts"), self.ints(ends, "ends"),
                              self.ints(axes, "axes"), self.ints(steps, "steps")], prim)
    return _Tensor(out, tuple(shape), tensor.perm)


def _aligned(shape, params) -> tuple[int, ...]:
  aligned = [1] * len(params["shape"])
  for axis, d in zip(params["broadcast_dimensions"], shape):
    aligned[axis] = d
  return tuple(aligned)


def _physical_shape(value, perm) -> tuple[int, ...]:
  if isinstance(value, _Tensor):
    return value.shape
  value = np.asarray(value)
  return tuple(value.shape[a] for a in perm) if value.ndim == len(perm) else value.shape


def _unsupported(prim: str, why: str = "") -> errors.InputError:
  return errors.InputError(f"ONNX export: the generator uses {prim}"
                           + (f" with {why}" if why else "")
                           + ", which the lowering does not handle; export --format=jax instead")


# ---- tracing the generator


def _forward(generator, variables, mode: str, found: list):
  """(images NHWC, *masks) → outputs, each dropout layer's mask taken from `masks`; called
  without masks, it records each dropout layer as (path, shape) in `found` instead."""

  def forward(images, *masks):
    index = 0

    def dropout_from_inputs(next_fun, args, kwargs, context):
      nonlocal index
      module = context.module
      if not isinstance(module, nn.Dropout) or context.method_name != "__call__":
        return next_fun(*args, **kwargs)
      x = args[0]
      if mode == "eval" or module.rate == 0:
        return x
      if masks:
        mask = masks[index]
      else:
        found.append(("/".join(module.path), x.shape))
        mask = jnp.ones(x.shape, bool)
      index += 1
      keep = 1.0 - module.rate
      return jax.lax.select(mask, x / keep, jnp.zeros_like(x))  # as flax's Dropout

    with nn.intercept_methods(dropout_from_inputs):
      if mode == "eval":
        return generator.apply(variables, images, train=False)
      outputs, _ = generator.apply(variables, images, train=True, mutable=["batch_stats"])
      return outputs

  return forward


def _dim_names(shape, probe) -> list:
  """ONNX dims of an NHWC shape, named after the input's: batch, height/f, width/f."""
  names = ["batch", shape[3]]
  for size, full, name in ((shape[1], probe[1], "height"), (shape[2], probe[2], "width")):
    names.append(name if size == full else f"{name}/{full // size}")
  return names


def build_model(generator, variables: Mapping[str, Any], mode: str, *, input_nc: int,
                metadata: Mapping[str, Any] | None = None, opset: int = OPSET):
  """The ONNX ModelProto of a Flax generator with `variables` ({'params', 'batch_stats'}).

  The graph computes, with batch, height and width dynamic (sides multiples of the generator's
  `size_multiple`),

    images: float32[batch, input_nc, height, width] in [-1, 1]
        -> outputs: float32[batch, output_nc, height, width] in [-1, 1]

  in test-time `mode`:
  * eval: running averages, no dropout: the usual inference graph.
  * paper: batch statistics computed in the graph; each dropout layer takes its mask as a
    boolean input named after the layer (True = keep; kept values are divided by 1 - rate, as
    flax's Dropout). onnxruntime's random operators cannot draw JAX's bits, hence inputs: masks
    drawn with P(True) = 1 - rate give the paper's behaviour, the masks a JAX run drew give its
    outputs.

  Sizes stay dynamic although the trace has one probe shape: whatever depends only on the
  weights is folded into constants, per-channel broadcasts keep size-1 axes for ONNX to
  broadcast, a sum divided by its element count becomes ReduceMean, and slices count from the
  nearer edge (tests/test_onnx_export.py runs every generator at other shapes than the probe).
  Mode, layout, the mask inputs and `metadata` go into metadata_props; the model declares the
  lowest IR version its opset needs, so that older runtimes load it.
  """
  onnx = import_onnx()
  if mode not in ("paper", "eval"):
    raise errors.UsageError(f"eval mode must be 'paper' or 'eval', got {mode!r}")
  multiple = getattr(generator, "size_multiple", None)
  if multiple is None:
    raise errors.UsageError(f"no ONNX export for {type(generator).__name__}: it is not a "
                            "generator (no size_multiple)")
  if "conv_impl" in {f.name for f in dataclasses.fields(generator)}:
    generator = generator.clone(conv_impl="xla")  # XLA's convolutions: one op per layer
  # A probe large enough that slices near an edge are told apart from the middle.
  probe = (2, 8 * max(multiple, generator.min_side), 12 * max(multiple, generator.min_side),
           input_nc)
  variables = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  masks: list = []
  images = jax.ShapeDtypeStruct(probe, jnp.float32)
  jax.eval_shape(_forward(generator, variables, mode, masks), images)
  closed = jax.make_jaxpr(_forward(generator, variables, mode, []))(
      images, *(jax.ShapeDtypeStruct(shape, jnp.bool_) for _, shape in masks))

  lowering = _Lowering(onnx)
  helper = onnx.helper
  graph_inputs = [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT,
                                                ["batch", input_nc, "height", "width"])]
  args = [_Tensor("images", tuple(probe[a] for a in _NCHW), _NCHW)]
  for path, shape in masks:
    name = lowering.name(path)
    graph_inputs.append(helper.make_tensor_value_info(name, onnx.TensorProto.BOOL,
                                                      _dim_names(shape, probe)))
    args.append(_Tensor(name, tuple(shape[a] for a in _NCHW), _NCHW))
  (out,) = lowering.run(closed.jaxpr, closed.consts, args)
  if not isinstance(out, _Tensor) or out.shape != tuple(closed.out_avals[0].shape[a]
                                                        for a in _NCHW):
    raise _unsupported("its output", "a layout or shape the lowering cannot keep dynamic")
  if out.perm != _NCHW:
    out = _Tensor(lowering.node("Transpose", [out.name], "nchw",
                                perm=[out.perm.index(a) for a in _NCHW]), out.shape, _NCHW)
  lowering.nodes.append(helper.make_node("Identity", [out.name], ["outputs"], name="outputs"))
  nodes, initializers = _prune(lowering.nodes, lowering.initializers, "outputs")

  output_nc = closed.out_avals[0].shape[3]
  graph = helper.make_graph(
      nodes, "pix2pix_generator", graph_inputs,
      [helper.make_tensor_value_info("outputs", onnx.TensorProto.FLOAT,
                                     ["batch", output_nc, "height", "width"])], initializers)
  opsets = [helper.make_opsetid("", opset)]
  model = helper.make_model(graph, opset_imports=opsets, producer_name="pix2pix-jax",
                            ir_version=helper.find_min_ir_version_for(opsets))
  meta = {"format": FORMAT, "mode": mode, "layout": "NCHW",
          "dropout_masks": ", ".join(
              f"{path}: bool[{', '.join(map(str, _dim_names(shape, probe)))}]"
              for path, shape in masks) or "none",
          **(metadata or {})}
  helper.set_model_props(model, {k: str(v) for k, v in meta.items()})
  onnx.checker.check_model(model)
  return model


def _prune(nodes, initializers, output: str):
  """The nodes `output` depends on, and the initialisers they read."""
  needed, kept = {output}, []
  for node in reversed(nodes):
    if any(o in needed for o in node.output):
      kept.append(node)
      needed.update(node.input)
  return kept[::-1], [i for i in initializers if i.name in needed]


def export_onnx(translator, path: str | os.PathLike, *, opset: int = OPSET) -> epath.Path:
  """Writes `translator`'s generator (an `inference.Translator`) as an ONNX model to `path`."""
  onnx = import_onnx()
  path = storage.resolve(path, "--output")
  metadata = {"input_nc": translator.input_nc, "output_nc": translator.output_nc,
              "size_multiple": translator.size_multiple, "crop_size": translator.crop_size,
              "direction": translator.direction, "step": translator.step}
  model = build_model(translator.generator, translator.variables, translator.mode,
                      input_nc=translator.input_nc, metadata=metadata, opset=opset)
  with atomic.atomic_path(path) as temporary:
    onnx.save_model(model, os.fspath(temporary))
  return path


def export(config, workdir: str, output: str, step: int | None = None) -> epath.Path:
  """`launch.py --mode=export --format=onnx`: the run's generator as an ONNX model."""
  from pix2pix_jax import inference
  translator = inference.translator(config, workdir, step)
  path = export_onnx(translator, output)
  print(f"exported the generator of checkpoint {translator.step} ({translator.mode} mode) to "
        f"{path}: ONNX, input 'images' float32[batch, {translator.input_nc}, height, width] in "
        f"[-1, 1], sides multiples of {translator.size_multiple}", flush=True)
  return path
