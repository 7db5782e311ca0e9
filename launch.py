"""Entry point: `python launch.py --config configs/facades.py --workdir runs/facades`.

Modes: train (default; resumes when the workdir has checkpoints, with the run's saved config
when --config is left out), eval (L1/PSNR/SSIM of a checkpoint on a split), translate (images or
folders through the generator), export (the generator as a jax.export artifact, an ONNX model
or the authors' .pth), summary (both networks layer by layer, checkpoints, latest evaluation,
config), demo (a local web page: draw an input, see the output). The test-time modes need only
--workdir: they use the run's saved config, and a --config given to them changes only test-time
fields (eval mode and batch size, data, split, seed). Override any config field with
`--config.key=value` (with --workdir alone, a field of the run's saved config).
Multi-host: `--distributed=auto` on TPU pods / SLURM / Kubernetes, or the explicit coordinator
flags. A mistake ends in one `error: ...` line and exit code 2 (the command is wrong) or 1 (the
run failed); `--traceback` adds the traceback (docs/errors.md).
"""

import pathlib
import re
import sys

from absl import flags
from ml_collections import config_flags

from pix2pix_jax import cli, errors, export, modes, storage

flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, samples, the page.")
flags.DEFINE_enum("mode", "train", modes.LAUNCH_MODES, "What to do: " + "; ".join(
    f"{name}: {modes.MODES[name].help}" for name in modes.LAUNCH_MODES) + ".")
flags.DEFINE_integer("step", None, "eval/translate/export/demo: checkpoint step (default: latest).")
flags.DEFINE_string("split", None, "eval: split to evaluate (default: config.data.eval_split).")
flags.DEFINE_string("input", None, "translate: an image file or a folder of images.")
flags.DEFINE_string("output", None, "translate: output folder; export: artifact path (a "
                    "folder for --format=pth); summary: Markdown file (default "
                    "WORKDIR/summary.md).")
flags.DEFINE_enum("format", None, list(export.FORMATS), "export: " + "; ".join(
    f"{f.name}: {f.description}" for f in export.FORMATS.values())
    + f". Default: the format --output's ending names, else {export.DEFAULT}.")
flags.DEFINE_bool("with_discriminator", False, "export --format=pth: also latest_net_D.pth.")
flags.DEFINE_bool("aligned", False, "translate: inputs are A|B images; use the input half.")
flags.DEFINE_enum("resize", "crop_size", ["crop_size", "multiple", "none"],
                  "translate: sizes not divisible by the network's multiple are resized to the "
                  "training crop (crop_size), to the nearest multiple (multiple), or refused.")
flags.DEFINE_string("artifact", None, "demo: serve this jax.export artifact (gen.jax) instead "
                    "of a checkpoint; --workdir then only adds palette, data and heatmap.")
flags.DEFINE_string("host", "127.0.0.1", "demo: address to bind (127.0.0.1: this machine only).")
flags.DEFINE_integer("port", 7860, "demo: port to serve on.")
flags.DEFINE_enum("distributed", "off", ["off", "auto"],
                  "auto: jax.distributed.initialize() detects the cluster (TPU pod, SLURM, ...).")
flags.DEFINE_string("coordinator_address", "", "host:port of process 0 (explicit multi-process).")
flags.DEFINE_integer("num_processes", 0, "Number of processes (explicit multi-process).")
flags.DEFINE_integer("process_id", -1, "This process's id in [0, num_processes).")
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py); optional except "
                                "to start a run.", lock_config=True)
flags.register_multi_flags_validator(
    ["mode", "workdir", "artifact"],
    lambda f: bool(f["workdir"]) or f["mode"] == "demo" and bool(f["artifact"]),
    "--workdir is required (--mode=demo: --workdir or --artifact)")
FLAGS = flags.FLAGS


def launch(argv):
  """Runs the mode the parsed flags ask for; `argv` holds what the flags left."""
  if len(argv) > 1:
    raise errors.UsageError(f"unexpected arguments: {' '.join(argv[1:])} (flags are written "
                            "--name=value)")
  from pix2pix_jax import commands, parallel, platform
  platform.quiet_library_logs()
  options = dict(step=FLAGS.step, split=FLAGS.split, input_path=FLAGS.input,
                 output=FLAGS.output, aligned=FLAGS.aligned, resize=FLAGS.resize,
                 export_format=FLAGS.format, with_discriminator=FLAGS.with_discriminator,
                 artifact=FLAGS.artifact, host=FLAGS.host, port=FLAGS.port,
                 eval_mode=_given("eval_mode"))
  if modes.MODES[FLAGS.mode].own_config:  # loads the run (or artifact) itself
    platform.configure()
    return commands.run(FLAGS.mode, None, FLAGS.workdir, **options)
  config = commands.resolve_config(FLAGS.mode, FLAGS.workdir, FLAGS.config, step=FLAGS.step)
  platform.configure(config)
  parallel.maybe_initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                        FLAGS.process_id, auto=FLAGS.distributed == "auto")
  parallel.log_topology()
  return commands.run(FLAGS.mode, config, FLAGS.workdir, **options)


def _given(field: str):
  """The value of `--config.<field>` when the command line gives it, else None."""
  if FLAGS.config is None:
    return None
  return config_flags.get_override_values(FLAGS["config"]).get(field)


def with_saved_config(argv: list[str]) -> list[str]:
  """Adds --config=configs/saved.py:WORKDIR when --config.* overrides come without --config and
  WORKDIR holds a run: its saved config is then the config they change (config_flags defines
  override flags only for a given --config, and before them)."""
  if any(re.match(r"--?config(=|$)", a) for a in argv[1:]):
    return argv
  if not any(re.match(r"--?(no)?config\.", a) for a in argv[1:]):
    return argv
  workdir = None
  for i, arg in enumerate(argv[1:], 1):
    match = re.match(r"--?workdir(=(.*))?$", arg)
    if match:
      workdir = match.group(2) if match.group(1) else (argv[i + 1] if i + 1 < len(argv) else None)
  try:
    checkpoints = storage.resolve(workdir, "--workdir") / "checkpoints" if workdir else None
    if not checkpoints or not checkpoints.is_dir() or not any(
        p.name.isdigit() for p in checkpoints.iterdir()):
      return argv
  except (errors.Pix2pixError, OSError):
    return argv  # the mode reports it
  saved = pathlib.Path(__file__).resolve().parent / "configs" / "saved.py"
  return [argv[0], f"--config={saved}:{workdir}", *argv[1:]]


def main(argv=None) -> int:
  """launch.py's command line (default sys.argv); returns the exit code."""
  return cli.run(launch, with_saved_config(list(sys.argv if argv is None else argv)))


if __name__ == "__main__":
  sys.exit(main())
