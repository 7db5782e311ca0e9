"""The paper's defaults (pix2pix, Isola et al. 2017, and the authors' options/*.py).

Every other config imports this one and overrides a few fields. Run, e.g.:
  python launch.py --config configs/facades.py --workdir runs/facades
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # all randomness (init, dropout, shuffling, augmentation) derives from it

  # ---- Data
  config.data = data = ml_collections.ConfigDict()
  data.dataset = "facades"  # synthetic | folder | facades | maps | cityscapes | edges2shoes | ...
  data.data_dir = ""  # folder datasets: root with train/ val/ (aligned A|B images)
  data.tfds_data_dir = ""  # where prepared TFDS datasets live ("" = TFDS default)
  data.manual_dir = ""  # where downloaded tarballs / extracted folders are looked for
  data.direction = "AtoB"  # AtoB | BtoA
  data.preprocess = "resize_and_crop"  # resize_and_crop | crop | scale_width | scale_width_and_crop | none
  data.load_size = 286  # pixels: resize to this ...
  data.crop_size = 256  # ... then random-crop this (the network's input size)
  data.aspect_ratio = 1.0  # width / height of load and crop sizes (e.g. 2.0: 256×512 crops)
  data.no_flip = False  # the paper flips horizontally at random
  data.train_split = "train"
  data.eval_split = "val"
  # At most this many files per split, the first in the authors' file order (their
  # --max_dataset_size; 0 = all). Training, evaluation and sample splits alike, as theirs.
  data.max_dataset_size = 0
  data.num_synthetic = 400  # examples in the synthetic dataset (same count as facades train)
  # Worker processes decoding and augmenting training batches (grain): "auto" = none on a
  # CPU-only host (threads of the training process), one per core (at most 8) on GPU/TPU hosts.
  # Batches are the same whatever the number.
  data.num_workers = ml_collections.FieldReference("auto", field_type=object)
  data.num_threads = 2  # reading threads per process (per worker process with workers)
  data.prefetch = 4  # batches read ahead per process (per worker process with workers)
  data.skip_bad_images = False  # skip (and count) undecodable images instead of failing

  # ---- Model
  config.model = model = ml_collections.ConfigDict()
  model.generator = "unet_256"  # unet_256 | unet_128 | unet (num_downs) | resnet_9blocks | resnet_6blocks
  model.num_downs = 8  # only for generator="unet"
  model.ngf = 64  # generator base width
  model.discriminator = "basic"  # basic (70×70 PatchGAN) | n_layers | pixel
  model.n_layers_d = 3  # only for discriminator="n_layers"; 0 keeps the stride-1 level, as theirs
  model.ndf = 64  # discriminator base width
  model.norm = "batch"  # batch | instance | none
  model.use_dropout = True
  model.dropout_rate = 0.5
  model.input_nc = 3  # channels of the input image (1 = grayscale)
  model.output_nc = 3  # channels of the output image
  # Initial weights, the authors' --init_type / --init_gain: conv weights normal N(0, gain) |
  # xavier (xavier_normal_, gain) | kaiming (kaiming_normal_ fan_in, gain unused) | orthogonal
  # (gain); BatchNorm scale N(1, gain) and biases 0 for every type.
  model.init_type = "normal"
  model.init_gain = 0.02
  # How convolutions run (same function, parameters and checkpoints whichever): auto = XLA's own
  # convolutions when lowered for GPU/TPU, the CPU formulations when lowered for CPU; xla =
  # XLA's everywhere (the reference); cpu_tuned = the CPU formulations everywhere.
  model.conv_impl = "auto"

  # ---- Loss
  config.loss = loss = ml_collections.ConfigDict()
  loss.gan_mode = "vanilla"  # vanilla (BCE, the paper) | lsgan | wgangp
  loss.lambda_l1 = 100.0
  # WGAN-GP penalty weight (gan_mode="wgangp" only). 0, because the authors' Pix2PixModel with
  # --gan_mode wgangp never calls their cal_gradient_penalty: the default reproduces their
  # training exactly. 10 (Gulrajani et al., and their function's default) adds their penalty.
  loss.lambda_gp = 0.0

  # ---- Optimiser and schedule (in epochs, as the authors count)
  config.optim = optim = ml_collections.ConfigDict()
  optim.lr = 2e-4
  optim.beta1 = 0.5
  optim.beta2 = 0.999
  optim.lr_policy = "linear"  # linear | step | cosine | constant
  optim.n_epochs = 100  # epochs at the initial learning rate
  optim.n_epochs_decay = 100  # epochs of linear decay afterwards
  optim.lr_decay_iters = 50  # epochs between ×0.1 steps (lr_policy="step")

  # ---- Loop
  config.batch_size = 1  # global batch, over all devices and hosts
  config.num_train_steps = -1  # -1: (n_epochs + n_epochs_decay) epochs
  config.compute_dtype = "float32"  # float32 | bfloat16 (parameters and optimiser stay float32)
  config.deterministic = False  # deterministic XLA kernels on GPU (slower)
  # A resume whose libraries, devices or XLA settings differ from its checkpoint's (so that it
  # is not bit-identical to an uninterrupted run) stops instead of warning.
  config.require_identical_environment = False
  # JAX's persistent compilation cache: a later launch of the same programs on this host reads
  # them instead of compiling again. "default" = $JAX_COMPILATION_CACHE_DIR or the per-user
  # ~/.cache/pix2pix_jax/jax_compilation_cache; a path (e.g. shared by a pod's hosts); "" = off.
  config.compilation_cache_dir = "default"

  # ---- Logging, samples, evaluation, checkpoints (intervals in steps; 0 = never)
  config.log_every_steps = 100
  config.sample_every_steps = 1000
  config.num_samples = 4  # validation examples shown in each sample grid
  config.eval_every_steps = 0  # periodic L1/PSNR/SSIM on data.eval_split
  config.eval_mode = "paper"  # paper (dropout on, batch statistics) | eval (running averages)
  config.eval_batch_size = 1
  # --mode=eval: the first this many images of the split in the authors' file order, as their
  # test.py --num_test (0 = all). Periodic evaluation during training uses the whole split.
  config.num_test = 50
  config.checkpoint_every_steps = 5000
  config.max_to_keep = 3  # newest checkpoints kept
  config.keep_every_steps = 0  # additionally keep every checkpoint at a multiple of this
  config.tensorboard = True

  # ---- Results page
  config.report = report = ml_collections.ConfigDict()
  # Another run's workdir (e.g. the authors' model imported with `convert`): its generator's
  # outputs on the sample inputs are shown beside ours in every sample grid ("" = none).
  report.reference_workdir = ""
  return config


def for_dataset(name: str, direction: str, batch_size: int, n_epochs: int,
                n_epochs_decay: int) -> ml_collections.ConfigDict:
  """The paper's defaults on one of its datasets, with its direction, batch and schedule."""
  config = get_config()
  config.data.dataset = name
  config.data.direction = direction
  config.batch_size = batch_size
  config.optim.n_epochs = n_epochs
  config.optim.n_epochs_decay = n_epochs_decay
  config.sample_every_steps = 2000
  config.eval_every_steps = 20000
  config.checkpoint_every_steps = 4000
  return config
