"""A tiny config for end-to-end tests: 32-px synthetic facades, a 5-level U-Net of width 8."""

from configs import default


def get_config():
  config = default.get_config()
  config.data.dataset = "synthetic"
  config.data.direction = "BtoA"
  config.data.load_size = 36
  config.data.crop_size = 32
  config.data.num_synthetic = 16
  config.data.num_threads = 1
  config.model.generator = "unet"
  config.model.num_downs = 5
  config.model.ngf = 8
  config.model.ndf = 8
  # XLA's own convolutions: they compile 2-3x faster than the CPU forms, and most tests are about
  # the loop, not the layers. The CPU forms have tests of their own (test_kernels, test_layers,
  # test_lowering, test_torch_equivalence) and run end to end in test_launch's first test.
  config.model.conv_impl = "xla"
  config.batch_size = 2
  config.optim.n_epochs = 1
  config.optim.n_epochs_decay = 1
  config.num_train_steps = 6
  config.log_every_steps = 2
  config.sample_every_steps = 3
  config.eval_every_steps = 3
  config.num_samples = 2
  config.eval_batch_size = 2
  config.checkpoint_every_steps = 3
  config.tensorboard = False
  return config
