"""Entry point: `python launch.py --config configs/facades.py --workdir runs/facades`.

Override any config field with `--config.key=value` (e.g. `--config.batch_size=4`). Multi-host:
`--distributed=auto` on TPU pods / SLURM / Kubernetes, or the explicit coordinator flags.
"""

from absl import app, flags, logging
from ml_collections import config_flags

flags.DEFINE_string("workdir", None, "Where checkpoints, metrics, samples and the page go.")
flags.DEFINE_enum("mode", "train", ["train"], "What to do.")
flags.DEFINE_enum("distributed", "off", ["off", "auto"],
                  "auto: jax.distributed.initialize() detects the cluster (TPU pod, SLURM, ...).")
flags.DEFINE_string("coordinator_address", "", "host:port of process 0 (explicit multi-process).")
flags.DEFINE_integer("num_processes", 0, "Number of processes (explicit multi-process).")
flags.DEFINE_integer("process_id", -1, "This process's id in [0, num_processes).")
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from pix2pix_jax import parallel, platform
  platform.quiet_library_logs()
  platform.configure(flags.FLAGS.config)
  parallel.maybe_initialize_distributed(
      flags.FLAGS.coordinator_address, flags.FLAGS.num_processes, flags.FLAGS.process_id,
      auto=flags.FLAGS.distributed == "auto")
  parallel.log_topology()
  from pix2pix_jax import loop
  loop.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
