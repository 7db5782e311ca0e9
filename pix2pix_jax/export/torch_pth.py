"""A run's networks as the authors' `latest_net_G.pth` (and `latest_net_D.pth`)."""

from __future__ import annotations

from etils import epath

from pix2pix_jax import convert, inference, models, storage


def _authors_test_options(config) -> str:
  """The options of the authors' test.py that build the networks of `config`."""
  m = config.model
  generator = models.make_generator(config)
  if generator.authors_name is None:  # their define_G names only some depths
    return (f"their {generator.describe()} on {m.input_nc} → {m.output_nc} channels "
            "(their define_G has no name for it)")
  options = (f"--netG {generator.authors_name} --ngf {m.ngf} --norm {m.norm} --input_nc "
             f"{m.input_nc} --output_nc {m.output_nc} --direction {config.data.direction}")
  return options + ("" if m.use_dropout else " --no_dropout")


def export(config, workdir: str, output: str, step: int | None = None, *,
           with_discriminator: bool = False) -> list[epath.Path]:
  """`launch.py --mode=export --format=pth`: OUTPUT/latest_net_G.pth (and _D with
  `with_discriminator`), the file names the authors' test.py loads."""
  _, weights, step = inference.restore(config, workdir, step)
  g_variables = {"params": weights.g_params, "batch_stats": weights.g_batch_stats}
  d_variables = ({"params": weights.d_params, "batch_stats": weights.d_batch_stats}
                 if with_discriminator else None)
  output = storage.resolve(output, "--output")
  written = convert.export_torch(config, output, g_variables, d_variables,
                                 num_batches_tracked=step)
  print(f"exported checkpoint {step} as the authors' {', '.join(str(p) for p in written)}; "
        f"their test.py loads it with --checkpoints_dir {output.parent} "
        f"--name {output.name} --model pix2pix "
        f"{_authors_test_options(config)} (their default is this project's paper mode; "
        "--eval: running averages without dropout)", flush=True)
  return written
