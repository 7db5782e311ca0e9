"""Entry point: `python launch.py --config configs/facades.py --workdir runs/facades`.

Modes: train (default; resumes when the workdir has checkpoints, with the run's saved config
when --config is left out), eval (L1/PSNR/SSIM of a checkpoint on a split), translate (images or
folders through the generator), export (the generator as a serialised jax.export artifact),
summary (both networks layer by layer, checkpoints, latest evaluation, config), demo (a local web
page: draw an input, see the output). The test-time modes need only --workdir: they use the
run's saved config, and a --config given to them changes only test-time fields (eval mode and
batch size, data, split, seed). Override any config field with `--config.key=value`.
Multi-host: `--distributed=auto` on TPU pods / SLURM / Kubernetes, or the explicit coordinator
flags. A mistake ends in one `error: ...` line and exit code 2 (the command is wrong) or 1 (the
run failed); `--traceback` adds the traceback (docs/errors.md).
"""

import sys

from absl import flags
from ml_collections import config_flags

from pix2pix_jax import cli, errors

flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, samples, the page.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "translate", "export", "summary", "demo"],
                  "What to do.")
flags.DEFINE_integer("step", None, "eval/translate/export/demo: checkpoint step (default: latest).")
flags.DEFINE_string("split", None, "eval: split to evaluate (default: config.data.eval_split).")
flags.DEFINE_string("input", None, "translate: an image file or a folder of images.")
flags.DEFINE_string("output", None, "translate: output folder; export: artifact path; "
                    "summary: Markdown file (default WORKDIR/summary.md).")
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
  if FLAGS.mode == "demo":  # loads the run (or artifact) itself, from its saved config
    platform.configure()
    from pix2pix_jax import demo_app
    demo_app.serve(FLAGS.workdir, FLAGS.step, FLAGS.artifact, host=FLAGS.host, port=FLAGS.port)
    return
  config = commands.resolve_config(FLAGS.mode, FLAGS.workdir, FLAGS.config, step=FLAGS.step)
  platform.configure(config)
  parallel.maybe_initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                        FLAGS.process_id, auto=FLAGS.distributed == "auto")
  parallel.log_topology()
  commands.run(FLAGS.mode, config, FLAGS.workdir, step=FLAGS.step, split=FLAGS.split,
               input_path=FLAGS.input, output=FLAGS.output, aligned=FLAGS.aligned,
               resize=FLAGS.resize)


def main(argv=None) -> int:
  """launch.py's command line (default sys.argv); returns the exit code."""
  return cli.run(launch, argv)


if __name__ == "__main__":
  sys.exit(main())
