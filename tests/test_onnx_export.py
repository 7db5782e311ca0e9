"""The generator as an ONNX model, run by onnxruntime, against the JAX generator."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

ort = pytest.importorskip(
    "onnxruntime", reason="ONNX export is an optional extra (pip install '.[onnx]'); CI has it")

from configs import default, quickstart  # noqa: E402
from helpers import tiny_config  # noqa: E402
from pix2pix_jax import evaluate, models, platform  # noqa: E402
from pix2pix_jax.export import onnx_model as onnx_export  # noqa: E402

ATOL = 1e-4  # the fidelity criterion: equal to the JAX generator within this


def _random_weights(generator, size: int, seed: int = 0):
  """Random parameters and running statistics, drawn with numpy for the generator's shapes
  (nothing to compile): kernels N(0, 1/fan_in), so that activations keep their scale; running
  statistics away from the initial mean 0 / var 1 (a degenerate eval-mode comparison)."""
  platform.configure()
  shapes = jax.eval_shape(lambda: generator.init({"params": jax.random.key(0)},
                                                 jnp.zeros((1, size, size, 3)), train=False))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name, shape = path[-1], leaf.shape
    if name == "kernel":
      return rng.normal(0, 1 / np.sqrt(np.prod(shape[:-1])), shape)
    if name in ("scale", "var"):
      return rng.uniform(0.5, 2.0, shape)
    return rng.normal(0, 0.3, shape)  # bias, mean

  flat = traverse_util.flatten_dict(shapes)
  return traverse_util.unflatten_dict(
      {path: jnp.asarray(draw(path, leaf), jnp.float32) for path, leaf in flat.items()})


def _generate_fn(generator, mode):
  """jit-ed images → (outputs NCHW, dropout masks NCHW in call order) of the JAX generator in
  `mode`; the masks are where dropout kept a value (where it kept a 0 the mask is moot)."""

  @jax.jit
  def run(variables, x_nhwc, key):
    masks = []

    def record(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if mode == "paper" and isinstance(context.module, nn.Dropout):
        masks.append((out != 0).transpose(0, 3, 1, 2))
      return out

    with nn.intercept_methods(record):
      out = evaluate.generate(generator, variables["params"], variables.get("batch_stats", {}),
                              x_nhwc, key, mode=mode)
    return out.transpose(0, 3, 1, 2), masks

  return run


def _session(generator, variables, mode):
  model = onnx_export.build_model(generator, variables, mode, input_nc=3)
  return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _check(session, generator, variables, mode, shapes, seed=0):
  rng = np.random.default_rng(seed)
  generate = _generate_fn(generator, mode)
  for n, h, w in shapes:
    x = rng.uniform(-1, 1, (n, h, w, 3)).astype(np.float32)
    expected, masks = jax.tree.map(np.asarray, generate(variables, x, jax.random.key(7)))
    names = [i.name for i in session.get_inputs()]
    assert names[0] == "images" and len(names) == 1 + len(masks)
    feeds = {"images": x.transpose(0, 3, 1, 2), **dict(zip(names[1:], masks))}
    got = session.run(None, feeds)[0]
    assert got.shape == expected.shape
    assert expected.std() > 1e-2, "degenerate comparison: the output is constant"
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL, err_msg=f"{mode} {n}x{h}x{w}")


@pytest.fixture(scope="module")
def quickstart_generator():
  """The quickstart model (6-level U-Net, ngf 32, 64 px) with random weights."""
  generator = models.make_generator(quickstart.get_config())
  return generator, _random_weights(generator, 64)


def test_eval_mode_equals_jax_for_any_batch_and_size(quickstart_generator):
  generator, variables = quickstart_generator
  session = _session(generator, variables, "eval")
  image = session.get_inputs()[0]
  assert image.shape == ["batch", 3, "height", "width"] and image.type == "tensor(float)"
  assert session.get_outputs()[0].shape == ["batch", 3, "height", "width"]
  meta = session.get_modelmeta().custom_metadata_map
  assert meta["mode"] == "eval" and meta["layout"] == "NCHW" and meta["dropout_masks"] == "none"
  _check(session, generator, variables, "eval", [(1, 64, 64), (3, 128, 64)])


def test_paper_mode_takes_the_dropout_masks_and_uses_batch_statistics(quickstart_generator):
  generator, variables = quickstart_generator
  session = _session(generator, variables, "paper")
  masks = session.get_inputs()[1:]
  # One dropout layer in a 6-level U-Net (levels 4 … num_downs - 2), after up_4 at 1/16 size.
  assert [(m.name, m.type, m.shape) for m in masks] == [
      ("Dropout_0", "tensor(bool)", ["batch", 256, "height/16", "width/16"])]
  _check(session, generator, variables, "paper", [(1, 64, 128), (3, 64, 64)])


def test_unet_256_eval_mode_at_256px():
  generator = models.make_generator(default.get_config())
  variables = _random_weights(generator, 256)
  _check(_session(generator, variables, "eval"), generator, variables, "eval", [(1, 256, 256)])


def test_resnet_generator_with_instance_norm_and_dropout_both_modes():
  # Batch norm is the U-Net tests' (the layer is the same); here reflection padding, instance
  # norm, 3×3 transposed convolutions with output_padding and residual blocks.
  config = tiny_config(**{"model.generator": "resnet_6blocks", "model.ngf": 4,
                          "model.norm": "instance", "model.use_dropout": True})
  generator = models.make_generator(config)
  variables = _random_weights(generator, 32)
  for mode in ("eval", "paper"):
    _check(_session(generator, variables, mode), generator, variables, mode, [(3, 32, 64)])


def test_unknown_generator_and_mode_are_refused(quickstart_generator):
  generator, variables = quickstart_generator
  with pytest.raises(ValueError, match="eval mode must be 'paper' or 'eval', got 'train'"):
    onnx_export.build_model(generator, variables, "train", input_nc=3)
  with pytest.raises(ValueError, match="no ONNX export for PatchDiscriminator"):
    onnx_export.build_model(models.PatchDiscriminator(), variables, "eval", input_nc=3)
