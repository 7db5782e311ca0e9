"""Preemption and Ctrl-C: a signal asks the training loop to save and stop at the next step."""

from __future__ import annotations

import signal

import jax


class StopRequest:
  """SIGTERM / SIGINT → save at the current step and exit cleanly (preemption).

  A second signal acts as usual (SIGINT raises KeyboardInterrupt, SIGTERM ends the process), so
  a run stuck in a long save can still be stopped. Under JAX's distributed runtime SIGTERM is
  left to JAX: its preemption service agrees with every process on the step at which all of them
  save (`Checkpointer.reached_preemption`), whereas a handler here would replace JAX's and stop
  only the process that got the signal. For the same reason SIGINT is only caught when there is
  a single process.
  """

  def __init__(self):
    self.signal_name = ""
    self._previous = {}

  def __enter__(self):
    signals = []
    if not jax.distributed.is_initialized():
      signals.append(signal.SIGTERM)
    if jax.process_count() == 1:
      signals.append(signal.SIGINT)
    for sig in signals:
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread (e.g. called from a test thread)
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if self.signal_name:  # asked twice: stop now, the usual way
      self._restore()
      signal.raise_signal(signum)
      return
    self.signal_name = signal.Signals(signum).name

  def _restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  def __exit__(self, *exc):
    self._restore()
