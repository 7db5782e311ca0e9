"""Entry point: `python launch.py --config configs/facades.py --workdir runs/facades`.

Modes: train (default; resumes when the workdir has checkpoints), eval (L1/PSNR/SSIM of a
checkpoint on a split), translate (images or folders through the generator), export (the
generator as a serialised jax.export artifact), demo (a local web page: draw an input, see the
output; `--workdir` alone, no --config). Override any config field with
`--config.key=value`. Multi-host: `--distributed=auto` on TPU pods / SLURM / Kubernetes, or the
explicit coordinator flags.
"""

from absl import app, flags
from ml_collections import config_flags

flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, samples, the page.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "translate", "export", "demo"],
                  "What to do.")
flags.DEFINE_integer("step", None, "eval/translate/export/demo: checkpoint step (default: latest).")
flags.DEFINE_string("split", None, "eval: split to evaluate (default: config.data.eval_split).")
flags.DEFINE_string("input", None, "translate: an image file or a folder of images.")
flags.DEFINE_string("output", None, "translate: output folder; export: artifact path.")
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
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
flags.register_multi_flags_validator(
    ["mode", "config", "workdir", "artifact"],
    lambda f: f["mode"] == "demo" and bool(f["workdir"] or f["artifact"]) or
    f["config"] is not None and bool(f["workdir"]),
    "--config and --workdir are required (--mode=demo: --workdir or --artifact)")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from pix2pix_jax import parallel, platform
  platform.quiet_library_logs()
  platform.configure(FLAGS.config)
  parallel.maybe_initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                        FLAGS.process_id, auto=FLAGS.distributed == "auto")
  parallel.log_topology()
  if FLAGS.mode == "demo":
    from pix2pix_jax import demo
    demo.serve(FLAGS.workdir, FLAGS.step, FLAGS.artifact, host=FLAGS.host, port=FLAGS.port)
    return
  if FLAGS.mode == "train":
    from pix2pix_jax import loop
    loop.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    return
  from pix2pix_jax import inference
  if FLAGS.mode == "eval":
    inference.run_eval(FLAGS.config, FLAGS.workdir, step=FLAGS.step, split=FLAGS.split)
  elif FLAGS.mode == "translate":
    inference.run_translate(FLAGS.config, FLAGS.workdir, FLAGS.input, FLAGS.output,
                            step=FLAGS.step, aligned=FLAGS.aligned, resize=FLAGS.resize)
  else:
    inference.run_export(FLAGS.config, FLAGS.workdir, FLAGS.output, step=FLAGS.step)


if __name__ == "__main__":
  app.run(main)
