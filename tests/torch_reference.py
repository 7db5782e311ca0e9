"""The authors' pix2pix in PyTorch: their networks and their training step, as the reference.

Used by the tests (equivalence of our networks, conversion and training step) and by the
benchmarks (`python -m bench.NAME` imports it as `tests.torch_reference`); it is not part of the
package, which never imports torch except to read a `.pth` file in `convert`.

The networks mirror `models/networks.py` in junyanz/pytorch-CycleGAN-and-pix2pix: the same
layers in the same order, the same bias rules and, most importantly, the same module names, so a
`latest_net_G.pth` / `latest_net_D.pth` saved by the authors' code loads here with
`load_state_dict(strict=True)`. State-dict keys therefore look like theirs:

* U-Net: nested skip blocks, `model.model.0.weight` (outermost down conv),
  `model.model.1.model.1.weight` (second level down conv), `model.model.1.model.3.model...`
  (deeper levels), ...
* ResNet: one flat `model` Sequential; residual blocks hold a `conv_block` Sequential.
* PatchGAN: one flat `model` Sequential (`model.0.weight`, ...); pixel D: `net.0.weight`, ...

`authors_step` is their `Pix2PixModel.optimize_parameters`, the one copy every comparison runs.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn

NormFactory = Callable[[int], nn.Module]


def get_norm_layer(norm: str) -> NormFactory:
  """'batch' | 'instance' | 'none', configured as the authors do.

  BatchNorm is affine with running statistics; InstanceNorm has neither (no state-dict entries);
  'none' inserts an `Identity`, so the Sequential indices of the other layers do not move.
  """
  if norm == "batch":
    return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
  if norm == "instance":
    return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
  if norm == "none":
    return lambda channels: nn.Identity()
  raise ValueError(f"unknown norm {norm!r}; choose one of ['batch', 'instance', 'none']")


def _use_bias(norm_factory: NormFactory) -> bool:
  # The authors' rule: a conv that a norm layer follows keeps its bias only for instance norm.
  return (isinstance(norm_factory, functools.partial)
          and norm_factory.func is nn.InstanceNorm2d)


def _as_factory(norm: str | NormFactory) -> NormFactory:
  return get_norm_layer(norm) if isinstance(norm, str) else norm


# ---------------------------------------------------------------------------------------------
# U-Net generator
# ---------------------------------------------------------------------------------------------


class UnetSkipConnectionBlock(nn.Module):
  """One U-Net level: down path, the inner levels (`submodule`), up path, skip concatenation.

  Sequential layout (the indices are part of the checkpoint format):
    outermost: [down conv, submodule, ReLU, up conv(+bias), Tanh]
    innermost: [LeakyReLU, down conv, ReLU, up conv, up norm]
    otherwise: [LeakyReLU, down conv, down norm, submodule, ReLU, up conv, up norm, (Dropout)]
  Every level but the outermost returns cat([input, output], channels).
  """

  def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
               submodule: nn.Module | None = None, outermost: bool = False,
               innermost: bool = False, norm_layer: str | NormFactory = "batch",
               use_dropout: bool = False):
    super().__init__()
    self.outermost = outermost
    norm_layer = _as_factory(norm_layer)
    use_bias = _use_bias(norm_layer)
    if input_nc is None:
      input_nc = outer_nc
    down_conv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
    if outermost:
      up_conv = nn.ConvTranspose2d(2 * inner_nc, outer_nc, kernel_size=4, stride=2, padding=1)
      layers = [down_conv, submodule, nn.ReLU(True), up_conv, nn.Tanh()]
    elif innermost:
      up_conv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1,
                                   bias=use_bias)
      layers = [nn.LeakyReLU(0.2, True), down_conv, nn.ReLU(True), up_conv,
                norm_layer(outer_nc)]
    else:
      up_conv = nn.ConvTranspose2d(2 * inner_nc, outer_nc, kernel_size=4, stride=2, padding=1,
                                   bias=use_bias)
      layers = [nn.LeakyReLU(0.2, True), down_conv, norm_layer(inner_nc), submodule,
                nn.ReLU(True), up_conv, norm_layer(outer_nc)]
      if use_dropout:
        layers.append(nn.Dropout(0.5))
    self.model = nn.Sequential(*layers)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    if self.outermost:
      return self.model(x)
    return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
  """The authors' U-Net: `num_downs` levels (8 for 256 px), built from the innermost outwards.

  Levels with ngf·8 channels beyond the first five get dropout when `use_dropout`.
  """

  def __init__(self, input_nc: int, output_nc: int, num_downs: int, ngf: int = 64,
               norm: str | NormFactory = "batch", use_dropout: bool = False):
    super().__init__()
    norm_layer = _as_factory(norm)
    block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm_layer=norm_layer)
    for _ in range(num_downs - 5):
      block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm_layer=norm_layer,
                                      use_dropout=use_dropout)
    for outer_mult, inner_mult in ((4, 8), (2, 4), (1, 2)):
      block = UnetSkipConnectionBlock(ngf * outer_mult, ngf * inner_mult, submodule=block,
                                      norm_layer=norm_layer)
    self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block,
                                         outermost=True, norm_layer=norm_layer)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.model(x)


# ---------------------------------------------------------------------------------------------
# ResNet generator (Johnson et al.'s fast-neural-style network, as in CycleGAN)
# ---------------------------------------------------------------------------------------------


def _padding(padding_type: str) -> tuple[list[nn.Module], int]:
  """The explicit 1-pixel pad layer for `padding_type` and the conv's own padding."""
  if padding_type == "reflect":
    return [nn.ReflectionPad2d(1)], 0
  if padding_type == "replicate":
    return [nn.ReplicationPad2d(1)], 0
  if padding_type == "zero":
    return [], 1
  raise ValueError(f"unknown padding_type {padding_type!r}; choose reflect, replicate or zero")


class ResnetBlock(nn.Module):
  """x + [pad, conv3×3, norm, ReLU, (Dropout), pad, conv3×3, norm](x)."""

  def __init__(self, dim: int, padding_type: str, norm_layer: NormFactory, use_dropout: bool,
               use_bias: bool):
    super().__init__()
    layers: list[nn.Module] = []
    pad, p = _padding(padding_type)
    layers += pad + [nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias),
                     norm_layer(dim), nn.ReLU(True)]
    if use_dropout:
      layers.append(nn.Dropout(0.5))
    pad, p = _padding(padding_type)
    layers += pad + [nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias),
                     norm_layer(dim)]
    self.conv_block = nn.Sequential(*layers)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
  """7×7 stem, two stride-2 downsamplings, `n_blocks` residual blocks, two transposed-conv
  upsamplings, 7×7 output conv and tanh. H and W must be multiples of 4."""

  def __init__(self, input_nc: int, output_nc: int, ngf: int = 64,
               norm: str | NormFactory = "batch", use_dropout: bool = False, n_blocks: int = 6,
               padding_type: str = "reflect"):
    if n_blocks < 0:
      raise ValueError(f"n_blocks must be non-negative, got {n_blocks}")
    super().__init__()
    norm_layer = _as_factory(norm)
    use_bias = _use_bias(norm_layer)
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
        norm_layer(ngf), nn.ReLU(True)]
    n_downsampling = 2
    for i in range(n_downsampling):
      mult = 2**i
      layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1,
                           bias=use_bias),
                 norm_layer(ngf * mult * 2), nn.ReLU(True)]
    mult = 2**n_downsampling
    for _ in range(n_blocks):
      layers.append(ResnetBlock(ngf * mult, padding_type, norm_layer, use_dropout, use_bias))
    for i in range(n_downsampling):
      mult = 2**(n_downsampling - i)
      layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, kernel_size=3, stride=2,
                                    padding=1, output_padding=1, bias=use_bias),
                 norm_layer(ngf * mult // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0),
               nn.Tanh()]
    self.model = nn.Sequential(*layers)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.model(x)


# ---------------------------------------------------------------------------------------------
# Discriminators
# ---------------------------------------------------------------------------------------------


class NLayerDiscriminator(nn.Module):
  """PatchGAN: a stride-2 4×4 conv without norm, `n_layers` - 1 stride-2 convs with norm, one
  stride-1 conv with norm (also for n_layers=0), and a stride-1 conv to one logit per patch.
  n_layers=3 is the 70×70 PatchGAN."""

  def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3,
               norm: str | NormFactory = "batch"):
    super().__init__()
    norm_layer = _as_factory(norm)
    use_bias = _use_bias(norm_layer)
    layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=1),
                               nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers):
      prev_mult, mult = mult, min(2**n, 8)
      layers += [nn.Conv2d(ndf * prev_mult, ndf * mult, kernel_size=4, stride=2, padding=1,
                           bias=use_bias),
                 norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
    prev_mult, mult = mult, min(2**n_layers, 8)
    layers += [nn.Conv2d(ndf * prev_mult, ndf * mult, kernel_size=4, stride=1, padding=1,
                         bias=use_bias),
               norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
    layers.append(nn.Conv2d(ndf * mult, 1, kernel_size=4, stride=1, padding=1))
    self.model = nn.Sequential(*layers)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.model(x)


class PixelDiscriminator(nn.Module):
  """1×1 PatchGAN: one logit per pixel."""

  def __init__(self, input_nc: int, ndf: int = 64, norm: str | NormFactory = "batch"):
    super().__init__()
    norm_layer = _as_factory(norm)
    use_bias = _use_bias(norm_layer)
    self.net = nn.Sequential(
        nn.Conv2d(input_nc, ndf, kernel_size=1, stride=1, padding=0),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, ndf * 2, kernel_size=1, stride=1, padding=0, bias=use_bias),
        norm_layer(ndf * 2),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 2, 1, kernel_size=1, stride=1, padding=0, bias=use_bias))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.net(x)


# ---------------------------------------------------------------------------------------------
# Construction by name, init, loss
# ---------------------------------------------------------------------------------------------


def define_G(input_nc: int, output_nc: int, ngf: int, net_g: str, norm: str = "batch",
             use_dropout: bool = False, num_downs: int | None = None,
             init_gain: float = 0.02, init_type: str = "normal") -> nn.Module:
  """The authors' `define_G` (CPU): unet_128/unet_256/resnet_6/9blocks, `init_weights`.

  `net_g="unet"` takes an explicit `num_downs` (this project's generic U-Net).
  """
  if net_g == "resnet_9blocks":
    net = ResnetGenerator(input_nc, output_nc, ngf, norm, use_dropout, n_blocks=9)
  elif net_g == "resnet_6blocks":
    net = ResnetGenerator(input_nc, output_nc, ngf, norm, use_dropout, n_blocks=6)
  elif net_g in ("unet_128", "unet_256", "unet"):
    downs = {"unet_128": 7, "unet_256": 8}.get(net_g, num_downs)
    if downs is None:
      raise ValueError("net_g='unet' needs num_downs")
    net = UnetGenerator(input_nc, output_nc, downs, ngf, norm, use_dropout)
  else:
    raise ValueError(f"unknown generator {net_g!r}")
  init_weights(net, init_type, init_gain)
  return net


def define_D(input_nc: int, ndf: int, net_d: str, n_layers_d: int = 3, norm: str = "batch",
             init_gain: float = 0.02, init_type: str = "normal") -> nn.Module:
  """The authors' `define_D` (CPU): basic / n_layers / pixel, `init_weights`."""
  if net_d == "basic":
    net = NLayerDiscriminator(input_nc, ndf, 3, norm)
  elif net_d == "n_layers":
    net = NLayerDiscriminator(input_nc, ndf, n_layers_d, norm)
  elif net_d == "pixel":
    net = PixelDiscriminator(input_nc, ndf, norm)
  else:
    raise ValueError(f"unknown discriminator {net_d!r}")
  init_weights(net, init_type, init_gain)
  return net


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
  """The authors' init_weights(init_type, gain): conv weights normal N(0, gain) |
  xavier_normal_(gain) | kaiming_normal_(a=0, mode='fan_in') | orthogonal_(gain), conv biases
  0, BatchNorm weight N(1, gain) and bias 0. Uses torch's global RNG (seed it first)."""

  def init_module(m: nn.Module) -> None:
    name = type(m).__name__
    if hasattr(m, "weight") and ("Conv" in name or "Linear" in name):
      if init_type == "normal":
        nn.init.normal_(m.weight.data, 0.0, gain)
      elif init_type == "xavier":
        nn.init.xavier_normal_(m.weight.data, gain=gain)
      elif init_type == "kaiming":
        nn.init.kaiming_normal_(m.weight.data, a=0, mode="fan_in")
      elif init_type == "orthogonal":
        nn.init.orthogonal_(m.weight.data, gain=gain)
      else:
        raise ValueError(f"unknown init_type {init_type!r}")
      if getattr(m, "bias", None) is not None:
        nn.init.constant_(m.bias.data, 0.0)
    elif "BatchNorm2d" in name:
      nn.init.normal_(m.weight.data, 1.0, gain)
      nn.init.constant_(m.bias.data, 0.0)

  net.apply(init_module)
  return net


class GANLoss(nn.Module):
  """The authors' GAN objective on raw D outputs (their D has no sigmoid).

  vanilla: BCE with logits; lsgan: MSE to the label; wgangp: -mean (real) / mean (fake).
  """

  def __init__(self, gan_mode: str, target_real_label: float = 1.0,
               target_fake_label: float = 0.0):
    super().__init__()
    self.register_buffer("real_label", torch.tensor(target_real_label))
    self.register_buffer("fake_label", torch.tensor(target_fake_label))
    self.gan_mode = gan_mode
    if gan_mode == "lsgan":
      self.loss = nn.MSELoss()
    elif gan_mode == "vanilla":
      self.loss = nn.BCEWithLogitsLoss()
    elif gan_mode == "wgangp":
      self.loss = None
    else:
      raise ValueError(f"unknown gan_mode {gan_mode!r}")

  def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    if self.gan_mode == "wgangp":
      return -prediction.mean() if target_is_real else prediction.mean()
    label = self.real_label if target_is_real else self.fake_label
    return self.loss(prediction, label.expand_as(prediction))


def count_params(net: nn.Module) -> int:
  return sum(p.numel() for p in net.parameters())


# ---------------------------------------------------------------------------------------------
# The training step
# ---------------------------------------------------------------------------------------------


def authors_step(net_g: nn.Module, net_d: nn.Module, optimizer_g: torch.optim.Optimizer,
                 optimizer_d: torch.optim.Optimizer, gan_loss: GANLoss, real_a: torch.Tensor,
                 real_b: torch.Tensor, lambda_l1: float = 100.0, *, as_floats: bool = True
                 ) -> dict[str, float | torch.Tensor]:
  """One step of the authors' `Pix2PixModel.optimize_parameters` (models/pix2pix_model.py).

  Their order: G(A) once; D on (A, G(A).detach()) and (A, B), ½ of the summed losses, D step;
  then G through the updated D: GAN(D(A, G(A)), real) + λ·L1, G step. The step's gradients stay
  on each parameter's `.grad` until the next step. Returns the four losses (L1 times λ) as
  floats, or as detached tensors with `as_floats=False` (no wait for a GPU, as their training
  loop, which reads the losses only when it prints them).
  """
  fake_b = net_g(real_a)
  # Update D.
  net_d.requires_grad_(True)
  optimizer_d.zero_grad()
  fake_ab = torch.cat((real_a, fake_b), 1)
  loss_d_fake = gan_loss(net_d(fake_ab.detach()), False)
  loss_d_real = gan_loss(net_d(torch.cat((real_a, real_b), 1)), True)
  ((loss_d_fake + loss_d_real) * 0.5).backward()
  optimizer_d.step()
  # Update G; D's parameters get no gradient.
  net_d.requires_grad_(False)
  optimizer_g.zero_grad()
  loss_g_gan = gan_loss(net_d(fake_ab), True)
  loss_g_l1 = nn.functional.l1_loss(fake_b, real_b) * lambda_l1
  (loss_g_gan + loss_g_l1).backward()
  optimizer_g.step()
  losses = {"g_gan": loss_g_gan, "g_l1": loss_g_l1, "d_real": loss_d_real, "d_fake": loss_d_fake}
  return {k: v.item() if as_floats else v.detach() for k, v in losses.items()}
