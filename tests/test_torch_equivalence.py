"""Our networks, layers and training step against the authors' PyTorch code.

The reference (`tests/torch_reference.py`) loads the authors' checkpoints strictly; `convert` maps
its state dicts onto our variables. Outputs, BatchNorm running statistics and whole training steps
must agree to float32 round-off.
"""

import functools
import re

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch is an optional extra (pip install '.[torch]'); CI installs it")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import traverse_util  # noqa: E402

from configs import default  # noqa: E402
from pix2pix_jax import convert, layers as resnet_layers, losses, models  # noqa: E402
from pix2pix_jax import state as state_lib  # noqa: E402
from pix2pix_jax import train as train_lib  # noqa: E402
from tests import torch_reference  # noqa: E402

# Forward outputs must match to this (the fidelity criterion of the project).
FORWARD_ATOL = 1e-4


def _config(**model):
  config = default.get_config()
  config.model.use_dropout = False
  for key, value in model.items():
    setattr(config.model, key, value)
  return config


def _torch_generator(config):
  m = config.model
  return torch_reference.define_G(m.input_nc, m.output_nc, m.ngf, m.generator, m.norm,
                                  m.use_dropout, num_downs=m.num_downs, init_gain=m.init_gain,
                                  init_type=m.init_type)


def _torch_discriminator(config):
  m = config.model
  return torch_reference.define_D(m.input_nc + m.output_nc, m.ndf, m.discriminator,
                                  m.n_layers_d, m.norm, init_gain=m.init_gain,
                                  init_type=m.init_type)


def _nhwc(t):
  return jnp.asarray(t.detach().numpy().transpose(0, 2, 3, 1))


def _calibrate_running_stats(net, x):
  """Sets BatchNorm running statistics to those of a batch, so that eval mode sees realistic
  activations (with the init's mean 0 / var 1 the outputs would be nearly constant)."""
  norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  for m in norms:
    m.momentum = 1.0
  net.train()
  with torch.no_grad():
    net(x)
  for m in norms:
    m.momentum = 0.1


def _flat(variables):
  return traverse_util.flatten_dict(variables)


def _check_network(net, module, config, network, x, check_train=True):
  """Train mode (outputs and updated running stats) then eval mode, torch vs ours."""
  if check_train:
    variables = convert.torch_state_dict_to_flax(net.state_dict(), config, network)
    net.train()
    with torch.no_grad():
      expected = net(x).numpy()
    ours, updates = jax.jit(functools.partial(module.apply, train=True, mutable=["batch_stats"]))(
        variables, _nhwc(x))
    ours = np.asarray(ours)
    ours = ours.transpose(0, 3, 1, 2) if ours.ndim == 4 else ours[:, None]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=FORWARD_ATOL, err_msg="train mode")
    torch_stats = _flat(convert.torch_state_dict_to_flax(net.state_dict(), config,
                                                         network)["batch_stats"])
    our_stats = _flat(updates["batch_stats"])
    assert set(our_stats) == set(torch_stats)
    for path, value in torch_stats.items():
      np.testing.assert_allclose(our_stats[path], value, rtol=1e-5, atol=1e-6, err_msg=str(path))
  variables = convert.torch_state_dict_to_flax(net.state_dict(), config, network)
  net.eval()
  with torch.no_grad():
    expected = net(x).numpy()
  ours = np.asarray(jax.jit(functools.partial(module.apply, train=False))(variables, _nhwc(x)))
  ours = ours.transpose(0, 3, 1, 2) if ours.ndim == 4 else ours[:, None]
  assert np.std(expected) > 1e-2, "degenerate comparison: the network's output is constant"
  np.testing.assert_allclose(ours, expected, rtol=0, atol=FORWARD_ATOL, err_msg="eval mode")


# ---- Parameter counts ------------------------------------------------------------------------


def _flax_count(module, in_channels, size):
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0),
                                              jnp.zeros((1, size, size, in_channels)),
                                              train=False))
  return models.count_params(shapes["params"])


@pytest.mark.parametrize("generator,norm", [("resnet_9blocks", "batch"),
                                            ("resnet_9blocks", "instance"),
                                            ("resnet_6blocks", "batch"),
                                            ("unet_256", "batch")])
def test_generator_parameter_count_equals_the_authors(generator, norm):
  config = _config(generator=generator, norm=norm)
  expected = torch_reference.count_params(_torch_generator(config))
  assert _flax_count(models.make_generator(config), 3, 256) == expected
  if (generator, norm) == ("unet_256", "batch"):
    assert expected == 54_413_955


def test_patchgan_without_strided_levels_keeps_the_authors_stride_1_level():
  # Their NLayerDiscriminator(n_layers=0): conv 6→64 (stride 2, bias), LReLU, conv 64→64
  # (stride 1, no bias) + BatchNorm(64), LReLU, conv 64→1 (bias).
  config = _config(discriminator="n_layers", n_layers_d=0)
  expected = torch_reference.count_params(_torch_discriminator(config))
  assert expected == (16 * 6 * 64 + 64) + (16 * 64 * 64 + 2 * 64) + (16 * 64 + 1) == 72_897
  assert _flax_count(models.make_discriminator(config), 6, 256) == expected


# ---- Layers of the ResNet generator against torch -------------------------------------------


def test_resnet_layers_match_torch_values_and_gradients():
  torch.manual_seed(0)
  x = torch.randn(2, 6, 5, 7, requires_grad=True)
  for layer, ours in [
      (torch.nn.Conv2d(6, 4, 3, stride=2, padding=1),
       resnet_layers.Conv(4, 3, strides=2, padding=1)),
      (torch.nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1),
       resnet_layers.ConvTranspose3x3(4)),
  ]:
    y = layer(x)
    torch.sin(y).sum().backward()
    w = layer.weight.detach().numpy()
    kernel = w.transpose(2, 3, 1, 0) if isinstance(layer, torch.nn.Conv2d) else w.transpose(
        2, 3, 0, 1)
    params = {"params": {"kernel": jnp.asarray(kernel),
                         "bias": jnp.asarray(layer.bias.detach().numpy())}}
    loss = lambda p, xj: jnp.sum(jnp.sin(ours.apply(p, xj)))  # noqa: E731
    out = ours.apply(params, _nhwc(x))
    assert out.shape == tuple(y.permute(0, 2, 3, 1).shape)
    np.testing.assert_allclose(out, y.detach().numpy().transpose(0, 2, 3, 1), atol=1e-5)
    g_params, g_x = jax.grad(loss, argnums=(0, 1))(params, _nhwc(x))
    g_w = layer.weight.grad.numpy()
    g_w = g_w.transpose(2, 3, 1, 0) if isinstance(layer, torch.nn.Conv2d) else g_w.transpose(
        2, 3, 0, 1)
    np.testing.assert_allclose(g_params["params"]["kernel"], g_w, atol=1e-4)
    np.testing.assert_allclose(g_x, x.grad.numpy().transpose(0, 2, 3, 1), atol=1e-4)
    x.grad = None
  padded = resnet_layers.pad2d(_nhwc(x), 2, "reflect")
  np.testing.assert_array_equal(
      padded, _nhwc(torch.nn.ReflectionPad2d(2)(x)))
  np.testing.assert_array_equal(
      resnet_layers.pad2d(_nhwc(x), 1, "replicate"), _nhwc(torch.nn.ReplicationPad2d(1)(x)))


# ---- Whole networks --------------------------------------------------------------------------


def test_unet_256_and_basic_discriminator_at_256px():
  """The paper's networks at full size, batch 1, train- and eval-mode BatchNorm."""
  torch.manual_seed(0)
  config = _config(generator="unet_256", discriminator="basic", norm="batch")
  generator, discriminator = _torch_generator(config), _torch_discriminator(config)
  x = torch.rand(1, 3, 256, 256) * 2 - 1
  calib = torch.rand(1, 3, 256, 256) * 2 - 1
  _calibrate_running_stats(generator, calib)
  _check_network(generator, models.make_generator(config), config, "generator", x)
  with torch.no_grad():
    pair = torch.cat([x, generator.eval()(x)], 1)
  _calibrate_running_stats(discriminator, torch.cat([calib, x], 1))
  _check_network(discriminator, models.make_discriminator(config), config, "discriminator",
                 pair)


# (generator, num_downs, ngf, size). The generic U-Net class is unet_128's; only compile time
# grows with the number of distinct layer shapes, so the cases below share theirs.
GENERATOR_CASES = [
    ("unet_128", 7, 4, 128),  # unet_128 needs 128 px; ngf 4 keeps it small
    ("resnet_6blocks", 8, 8, 32),
    ("resnet_9blocks", 8, 8, 32),
]


@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("generator,num_downs,ngf,size", GENERATOR_CASES)
def test_small_generators(generator, num_downs, ngf, size, norm):
  torch.manual_seed(1)
  config = _config(generator=generator, num_downs=num_downs, ngf=ngf, norm=norm)
  net = _torch_generator(config)
  _calibrate_running_stats(net, torch.rand(2, 3, size, size) * 2 - 1)
  _check_network(net, models.make_generator(config), config, "generator",
                 torch.rand(2, 3, size, size) * 2 - 1)


@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("discriminator,n_layers,size", [("basic", 3, 32), ("n_layers", 4, 64),
                                                          ("n_layers", 0, 32), ("pixel", 3, 32)])
def test_small_discriminators(discriminator, n_layers, size, norm):
  torch.manual_seed(2)
  config = _config(discriminator=discriminator, n_layers_d=n_layers, ndf=8, norm=norm)
  net = _torch_discriminator(config)
  _calibrate_running_stats(net, torch.rand(2, 6, size, size) * 2 - 1)
  _check_network(net, models.make_discriminator(config), config, "discriminator",
                 torch.rand(2, 6, size, size) * 2 - 1)


@pytest.mark.parametrize("generator,ngf,size", [("unet_128", 4, 128), ("resnet_6blocks", 8, 32)])
def test_generators_with_dropout_layers_in_eval_mode(generator, ngf, size):
  """Dropout layers shift the authors' ResNet indices; eval mode compares without dropout."""
  torch.manual_seed(3)
  config = _config(generator=generator, ngf=ngf, use_dropout=True)
  net = _torch_generator(config)
  _calibrate_running_stats(net, torch.rand(2, 3, size, size) * 2 - 1)
  _check_network(net, models.make_generator(config), config, "generator",
                 torch.rand(2, 3, size, size) * 2 - 1, check_train=False)


def test_networks_without_norm():
  torch.manual_seed(4)
  config = _config(generator="resnet_6blocks", ngf=8, discriminator="pixel", ndf=8, norm="none")
  for net, module, network, channels in [
      (_torch_generator(config), models.make_generator(config), "generator", 3),
      (_torch_discriminator(config), models.make_discriminator(config), "discriminator", 6)]:
    # Without norm layers the N(0, 0.02) init leaves activations vanishingly small; a
    # variance-preserving init and non-zero biases make the comparison meaningful.
    for layer in net.modules():
      if isinstance(layer, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
        torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="linear")
        if layer.bias is not None:
          torch.nn.init.normal_(layer.bias, 0.0, 0.1)
    _check_network(net, module, config, network, torch.rand(2, channels, 32, 32) * 2 - 1)


# ---- Initialisation ---------------------------------------------------------------------------


@pytest.mark.parametrize("init_type,init_gain", [("normal", 0.02), ("xavier", 0.02),
                                                 ("kaiming", 0.02), ("orthogonal", 0.5)])
def test_init_statistics_equal_the_authors_init_weights(init_type, init_gain):
  """Per layer, our initial weights against the reference network's, initialised by the authors'
  init_weights: the same spread (fans on their weight layout, transposed convs included),
  BatchNorm scale N(1, gain), zero biases; orthogonal weights are exactly orthogonal in their
  layout."""
  torch.manual_seed(11)
  cases = [(dict(generator="unet", num_downs=5, ngf=8), "generator", 3, 32),
           (dict(generator="resnet_6blocks", ngf=8), "generator", 3, 16),
           (dict(discriminator="basic", ndf=8), "discriminator", 6, 32),
           (dict(discriminator="pixel", ndf=32), "discriminator", 6, 4)]
  bn_ours, bn_theirs = [], []
  for model, network, channels, size in cases:
    # Initial weights do not depend on how convolutions run: XLA's compile fastest eagerly.
    config = _config(init_type=init_type, init_gain=init_gain, conv_impl="xla", **model)
    net = _torch_discriminator(config) if network == "discriminator" else _torch_generator(config)
    module = (models.make_discriminator(config) if network == "discriminator"
              else models.make_generator(config))
    variables = module.init(jax.random.key(12), jnp.zeros((1, size, size, channels)),
                            train=False)
    ours = convert.flax_to_torch_state_dict(variables, config, network)
    for key, theirs in net.state_dict().items():
      theirs, mine = theirs.numpy(), np.asarray(ours[key])
      if key.endswith("bias"):
        assert not np.any(mine) and not np.any(theirs), key
      elif theirs.ndim == 4:  # a conv or transposed-conv weight
        tol = 6 / np.sqrt(theirs.size)  # ~6 standard errors of the ratio of two std estimates
        ratio = mine.std() / theirs.std()
        assert abs(ratio - 1) < tol, f"{key}: std {mine.std():.4g} vs {theirs.std():.4g}"
        if init_type == "orthogonal":
          flat = mine.reshape(mine.shape[0], -1)
          gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
          np.testing.assert_allclose(gram, init_gain**2 * np.eye(len(gram)), atol=1e-5,
                                     err_msg=key)
      elif key.endswith("weight"):  # BatchNorm scale
        bn_ours.append(mine)
        bn_theirs.append(theirs)
  bn_ours, bn_theirs = np.concatenate(bn_ours), np.concatenate(bn_theirs)
  assert abs(bn_ours.mean() - 1) < 5 * init_gain / np.sqrt(bn_ours.size)
  assert abs(bn_ours.std() / bn_theirs.std() - 1) < 6 / np.sqrt(bn_ours.size)
  assert abs(bn_theirs.std() / init_gain - 1) < 4 / np.sqrt(bn_theirs.size)


def test_unknown_init_type_is_a_clear_error():
  generator = models.make_generator(_config(init_type="uniform"))
  with pytest.raises(ValueError, match="unknown model.init_type 'uniform'"):
    jax.eval_shape(functools.partial(generator.init, train=False), jax.random.key(0),
                   jnp.zeros((1, 256, 256, 3)))


# ---- WGAN-GP ---------------------------------------------------------------------------------


def test_gradient_penalty_equals_the_authors_under_torch_autograd():
  """Their cal_gradient_penalty(netD, real, fake, type='mixed', constant=1, lambda_gp=10) on
  one fixed pair of 6-channel batches: value, D's parameter gradients (through the input
  gradient and BatchNorm's batch statistics) and the running statistics its D pass updates."""
  torch.manual_seed(13)
  config = _config(discriminator="basic", ndf=8, init_type="kaiming")
  net = _torch_discriminator(config)
  variables = convert.torch_state_dict_to_flax(net.state_dict(), config, "discriminator")
  module = models.make_discriminator(config)
  real = torch.rand(2, 6, 32, 32) * 2 - 1
  fake = torch.rand(2, 6, 32, 32) * 2 - 1
  alpha = torch.rand(2)
  lambda_gp = 10.0

  net.train()
  weights = alpha.view(2, 1).expand(2, real.nelement() // 2).contiguous().view(*real.shape)
  interpolates = (weights * real + (1 - weights) * fake).requires_grad_(True)
  out = net(interpolates)
  gradients = torch.autograd.grad(outputs=out, inputs=interpolates,
                                  grad_outputs=torch.ones(out.size()), create_graph=True,
                                  retain_graph=True, only_inputs=True)[0].view(2, -1)
  expected = (((gradients + 1e-16).norm(2, dim=1) - 1.0) ** 2).mean() * lambda_gp
  expected.backward()

  def penalty(params):
    def critic(x):
      return module.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                          train=True, mutable=["batch_stats"])
    value, updates = losses.gradient_penalty(critic, _nhwc(real), _nhwc(fake),
                                             jnp.asarray(alpha.numpy()))
    return lambda_gp * value, updates["batch_stats"]

  (value, stats), grads = jax.jit(jax.value_and_grad(penalty, has_aux=True))(
      variables["params"])
  assert 1.0 < expected.item()  # gradient norms far from 1: a penalty worth comparing
  np.testing.assert_allclose(float(value), expected.item(), rtol=1e-5)
  # (The last conv's bias does not reach the input gradient: torch leaves its grad None.)
  torch_grads = dict(net.state_dict(), **{
      k: torch.zeros_like(p) if p.grad is None else p.grad for k, p in net.named_parameters()})
  expected_grads = _flat(convert.torch_state_dict_to_flax(torch_grads, config,
                                                          "discriminator")["params"])
  for path, grad in _flat(grads).items():
    scale = np.abs(expected_grads[path]).max()
    np.testing.assert_allclose(grad, expected_grads[path], rtol=0, atol=1e-4 * scale,
                               err_msg=str(path))
  expected_stats = _flat(convert.torch_state_dict_to_flax(net.state_dict(), config,
                                                          "discriminator")["batch_stats"])
  for path, stat in _flat(stats).items():
    np.testing.assert_allclose(stat, expected_stats[path], rtol=1e-5, atol=1e-6,
                               err_msg=str(path))


# ---- Conversion round trips and errors -------------------------------------------------------


@pytest.mark.parametrize("model", [
    dict(generator="unet", num_downs=6, norm="batch"),
    dict(generator="resnet_6blocks", norm="instance", use_dropout=True),
    dict(discriminator="n_layers", n_layers_d=4, norm="batch"),
    dict(discriminator="pixel", norm="instance"),
])
def test_round_trip_torch_flax_torch_is_exact(model):
  torch.manual_seed(5)
  config = _config(ngf=4, ndf=4, **model)
  network = "discriminator" if "discriminator" in model else "generator"
  net = _torch_discriminator(config) if network == "discriminator" else _torch_generator(config)
  state_dict = net.state_dict()
  variables = convert.torch_state_dict_to_flax(state_dict, config, network)
  back = convert.flax_to_torch_state_dict(variables, config, network)
  assert list(back) == list(state_dict)  # same keys, in the authors' order
  for key, value in state_dict.items():
    if not key.endswith("num_batches_tracked"):
      np.testing.assert_array_equal(back[key], value.numpy(), err_msg=key)
  net.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
def test_exported_pth_files_load_strictly_into_the_authors_networks(tmp_path):
  """`convert.export_torch` (launch.py --mode=export --format=pth): latest_net_G.pth and
  latest_net_D.pth that `torch.load` + `load_state_dict(strict=True)` take, with our outputs in
  eval mode and, for G, in train mode (batch statistics: the authors' test.py without --eval)."""
  torch.manual_seed(6)
  config = _config(generator="unet", num_downs=6, ngf=8, ndf=8, norm="batch")
  size = 64
  ours = {}
  for network, make, channels in (("generator", _torch_generator, 3),
                                  ("discriminator", _torch_discriminator, 6)):
    source = make(config)
    _calibrate_running_stats(source, torch.rand(2, channels, size, size) * 2 - 1)
    ours[network] = convert.torch_state_dict_to_flax(source.state_dict(), config, network)
  written = convert.export_torch(config, tmp_path / "exported", ours["generator"],
                                 ours["discriminator"], num_batches_tracked=7)
  assert [p.name for p in written] == ["latest_net_G.pth", "latest_net_D.pth"]
  x = torch.rand(3, 3, size, size) * 2 - 1
  for path, network, make, module in (
      (written[0], "generator", _torch_generator, models.make_generator(config)),
      (written[1], "discriminator", _torch_discriminator, models.make_discriminator(config))):
    net = make(config)
    state_dict = torch.load(path, weights_only=True)
    net.load_state_dict(state_dict, strict=True)
    assert int(next(v for k, v in state_dict.items() if k.endswith("num_batches_tracked"))) == 7
    inputs = x if network == "generator" else torch.cat([x, torch.tanh(x)], 1)
    for train in (False, True) if network == "generator" else (False,):
      net.train(train)
      with torch.no_grad():
        expected = net(inputs).numpy()
      apply = jax.jit(lambda v, x: module.apply(v, x, train=train, mutable=["batch_stats"])[0])
      got = np.asarray(apply(ours[network], _nhwc(inputs)))
      got = got.transpose(0, 3, 1, 2) if got.ndim == 4 else got[:, None]
      np.testing.assert_allclose(got, expected, rtol=0, atol=FORWARD_ATOL,
                                 err_msg=f"{network}, train={train}")


# ---- Conversion errors ------------------------------------------------------------------------


def test_conversion_accepts_data_parallel_prefix_and_legacy_instance_norm_stats():
  config = _config(generator="unet", num_downs=5, ngf=4, norm="instance")
  state_dict = _torch_generator(config).state_dict()
  # PyTorch < 0.4 saved running statistics for InstanceNorm; the authors' loader drops them.
  state_dict["model.model.1.model.2.running_mean"] = torch.zeros(8)
  state_dict["model.model.1.model.2.running_var"] = torch.ones(8)
  wrapped = {f"module.{k}": v for k, v in state_dict.items()}
  variables = convert.torch_state_dict_to_flax(wrapped, config)
  assert "batch_stats" in variables and not variables["batch_stats"]


def _generator_state_dict(**model):
  return _torch_generator(_config(**model)).state_dict()


@pytest.mark.parametrize("checkpoint,model,message", [
    # A unet_128 checkpoint read as unet_256: level 6 is innermost there (no down norm).
    (dict(generator="unet_128", ngf=4), dict(generator="unet_256", ngf=4),
     r"missing key 'model\.model\.1(\.model\.3){5}\.model\.2\.weight'"),
    (dict(generator="unet", num_downs=5, ngf=4), dict(generator="unet", num_downs=5, ngf=8),
     r"key 'model\.model\.0\.weight' has shape \(4, 3, 4, 4\), expected \(8, 3, 4, 4\)"),
    (dict(generator="unet", num_downs=5, ngf=4, norm="instance"),
     dict(generator="unet", num_downs=5, ngf=4, norm="batch"),
     r"unexpected key 'model\.model\.0\.bias'"),
    (dict(generator="unet", num_downs=5, ngf=4, norm="batch"),
     dict(generator="unet", num_downs=5, ngf=4, norm="instance"),
     r"missing key 'model\.model\.0\.bias'"),
    (dict(generator="resnet_6blocks", ngf=4, use_dropout=True),
     dict(generator="resnet_6blocks", ngf=4, use_dropout=False),
     r"missing key 'model\.10\.conv_block\.5\.weight'"),
    (dict(generator="resnet_9blocks", ngf=4), dict(generator="resnet_6blocks", ngf=4),
     r"missing key 'model\.16\.weight'"),  # block 6 of 9 sits where 6 blocks upsample
])
def test_wrong_architecture_names_the_first_key_that_does_not_fit(checkpoint, model, message):
  torch.manual_seed(6)
  state_dict = _generator_state_dict(**checkpoint)
  with pytest.raises(convert.ConversionError, match=message) as info:
    convert.torch_state_dict_to_flax(state_dict, _config(**model))
  assert "does not match" in str(info.value)


def test_extra_key_is_reported():
  config = _config(discriminator="basic", ndf=4)
  state_dict = _torch_discriminator(config).state_dict()
  state_dict["model.99.weight"] = torch.zeros(1)
  with pytest.raises(convert.ConversionError, match=re.escape("unexpected key 'model.99.weight'")):
    convert.torch_state_dict_to_flax(state_dict, config, "discriminator")


# ---- One full training step ------------------------------------------------------------------


@pytest.mark.parametrize("gan_mode", ["vanilla", "wgangp"])
def test_training_steps_match_the_authors(gan_mode):
  """Identical weights and batches, dropout off: G and D parameters and BatchNorm running
  statistics after 1 and 3 steps of the authors' update order. wgangp runs with the default
  loss.lambda_gp = 0: their Pix2PixModel with --gan_mode wgangp adds no gradient penalty.

  Tolerance. Measured (seeded, 2-core CPU): losses agree to 2e-7 relative, running statistics
  to 6e-7, D parameters to 2e-7 and all but 5 of 261,715 G parameters to 1e-6. Those 5 have a
  first gradient |g| of 1e-10 … 6e-8, around Adam's eps = 1e-8, where the first update
  lr·g/(|g| + eps) turns float32 reduction-order noise in g into a visible change (2e-5
  measured; a sign flip could reach 2·lr). So: parameters whose first gradient exceeds 1e-6
  must match to 2e-6 (about 1% of one Adam step of lr = 2e-4, so a wrong order, β or loss
  weight fails); the others only to 2·lr per step taken.
  """
  torch.manual_seed(7)
  config = _config(generator="unet", num_downs=5, ngf=8, ndf=8, discriminator="basic",
                   norm="batch")
  config.optim.lr_policy = "constant"
  config.loss.gan_mode = gan_mode
  lr = config.optim.lr
  net_g, net_d = _torch_generator(config), _torch_discriminator(config)
  net_g.train()
  net_d.train()
  opt_g = torch.optim.Adam(net_g.parameters(), lr=lr, betas=(config.optim.beta1,
                                                             config.optim.beta2))
  opt_d = torch.optim.Adam(net_d.parameters(), lr=lr, betas=(config.optim.beta1,
                                                             config.optim.beta2))
  gan_loss = torch_reference.GANLoss(config.loss.gan_mode)

  built = state_lib.build(config, steps_per_epoch=1, image_shape=(32, 32))
  generator, discriminator, g_tx, d_tx = (built.generator, built.discriminator, built.g_tx,
                                          built.d_tx)
  # The abstract state's structure; its random init is replaced by the reference's weights, so
  # evaluating only its shapes saves compiling the initialisers.
  state = built.abstract_state
  g_vars = convert.torch_state_dict_to_flax(net_g.state_dict(), config, "generator")
  d_vars = convert.torch_state_dict_to_flax(net_d.state_dict(), config, "discriminator")
  state = state.replace(
      step=jnp.zeros((), jnp.int32), rng=jax.random.key_data(jax.random.key(config.seed)),
      g_params=g_vars["params"], g_batch_stats=g_vars["batch_stats"],
      g_opt_state=g_tx.init(g_vars["params"]), d_params=d_vars["params"],
      d_batch_stats=d_vars["batch_stats"], d_opt_state=d_tx.init(d_vars["params"]))
  step_fn = jax.jit(train_lib.bind_train_step(config, generator, discriminator, g_tx, d_tx))

  def first_grad_magnitude(net, network):
    # The step's torch gradients laid out as our parameters (reusing the converter).
    state_dict = dict(net.state_dict(),
                      **{k: p.grad.abs() for k, p in net.named_parameters()})
    return _flat(convert.torch_state_dict_to_flax(state_dict, config, network)["params"])

  batches = torch.Generator().manual_seed(8)
  for step in range(1, 4):
    real_a = torch.rand(2, 3, 32, 32, generator=batches) * 2 - 1
    real_b = torch.rand(2, 3, 32, 32, generator=batches) * 2 - 1
    torch_losses = torch_reference.authors_step(net_g, net_d, opt_g, opt_d, gan_loss, real_a,
                                                real_b, config.loss.lambda_l1)
    if step == 1:
      small_grad = {"generator": first_grad_magnitude(net_g, "generator"),
                    "discriminator": first_grad_magnitude(net_d, "discriminator")}
    state, metrics = step_fn(state, {"A": _nhwc(real_a), "B": _nhwc(real_b)})
    for name, value in torch_losses.items():
      # (wgangp's losses are means of raw logits that can nearly cancel: also an absolute
      # bound, 1e-5 of vanilla's ~0.7; measured 1.3e-6 on g_gan at step 2.)
      np.testing.assert_allclose(float(metrics[name]), value, rtol=1e-5, atol=7e-6,
                                 err_msg=name)
    if step not in (1, 3):
      continue
    for net, network, params, stats in [
        (net_g, "generator", state.g_params, state.g_batch_stats),
        (net_d, "discriminator", state.d_params, state.d_batch_stats)]:
      expected = convert.torch_state_dict_to_flax(net.state_dict(), config, network)
      for path, value in _flat(expected["batch_stats"]).items():
        np.testing.assert_allclose(_flat(stats)[path], value, rtol=0, atol=1e-5,
                                   err_msg=f"{network} step {step} {path}")
      for path, value in _flat(expected["params"]).items():
        ill_conditioned = np.asarray(small_grad[network][path]) <= 1e-6
        tol = np.where(ill_conditioned, 2 * lr * step, 2e-6)
        diff = np.abs(np.asarray(_flat(params)[path]) - np.asarray(value))
        assert np.all(diff <= tol), (
            f"{network} step {step} {path}: max diff {diff.max():.3g} "
            f"({int(np.sum(diff > tol))} elements over tolerance)")


# ---- The command line's checkpoint ------------------------------------------------------------


def test_converted_checkpoint_restores_like_a_training_checkpoint(tmp_path):
  from pix2pix_jax import checkpointing
  torch.manual_seed(9)
  config = _config(generator="unet", num_downs=5, ngf=4, ndf=4, norm="batch")
  config.data.crop_size = 32
  net_g, net_d = _torch_generator(config), _torch_discriminator(config)
  torch.save(net_g.state_dict(), tmp_path / "latest_net_G.pth")
  torch.save(net_d.state_dict(), tmp_path / "latest_net_D.pth")
  convert.convert_checkpoint(config, str(tmp_path / "latest_net_G.pth"),
                             str(tmp_path / "latest_net_D.pth"), str(tmp_path / "run"), step=7)

  abstract = state_lib.build(config, steps_per_epoch=1).abstract_state
  ckpt = checkpointing.Checkpointer(tmp_path / "run" / "checkpoints", config=config.to_dict())
  state, step = ckpt.restore_latest(abstract)
  ckpt.close()
  assert step == 7 and int(state.step) == 7
  for net, network, params, stats in [
      (net_g, "generator", state.g_params, state.g_batch_stats),
      (net_d, "discriminator", state.d_params, state.d_batch_stats)]:
    expected = _flat(convert.torch_state_dict_to_flax(net.state_dict(), config, network))
    restored = _flat({"params": params, "batch_stats": stats})
    assert set(restored) == set(expected)
    for path, value in expected.items():
      np.testing.assert_array_equal(restored[path], value, err_msg=str(path))

  # Test time reads the imported run from its directory alone (the config saved with it).
  from pix2pix_jax import inference
  translator = inference.load(tmp_path / "run")
  assert translator.step == 7
  for path, value in _flat(state.g_params).items():
    np.testing.assert_array_equal(_flat(translator.g_params)[path], value, err_msg=str(path))
