"""SIGTERM / SIGINT as a request to stop at the next step boundary (after saving a checkpoint).

    with StopSignals() as stop:
      for step in ...:
        ...
        if stop.requested: save; break

A second signal of the same kind while the first is pending restores the default behaviour and
re-raises it (Ctrl-C twice quits at once). In a multi-process run every process must stop at the
same step: `requested_anywhere` combines the processes' flags. On TPU, `preemption_sync_point` also
honours JAX's preemption notice (all hosts get it at the same step).
"""
from __future__ import annotations

import signal
import threading

from absl import logging
import jax
import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
  def __init__(self, signals=SIGNALS):
    self.signals = signals
    self.signum: int | None = None
    self._old: dict = {}

  def _handle(self, signum, frame):
    if self.signum is not None:  # second signal: stop waiting for the step boundary
      signal.signal(signum, self._old.get(signum, signal.SIG_DFL))
      signal.raise_signal(signum)
      return
    self.signum = signum
    logging.warning("Received %s: saving a checkpoint at the end of this step, then stopping.",
                    signal.Signals(signum).name)

  def __enter__(self) -> "StopSignals":
    if threading.current_thread() is threading.main_thread():
      for s in self.signals:
        self._old[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for s, old in self._old.items():
      signal.signal(s, old)
    self._old.clear()

  @property
  def requested(self) -> bool:
    return self.signum is not None

  def requested_anywhere(self) -> bool:
    """Whether any process received a stop signal (a collective: every process calls it each step)."""
    if jax.process_count() == 1:
      return self.requested
    from jax.experimental import multihost_utils
    flags = multihost_utils.process_allgather(np.int32(self.requested))
    return bool(np.asarray(flags).max())

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name if self.signum is not None else ""


def preemption_sync_point(step: int) -> bool:
  """JAX's preemption sync point on TPU: True on every host at the same step once any host got a
  preemption notice (`multihost_utils.reached_preemption_sync_point`; a collective, called every step).
  False with one process, on other backends (there SIGTERM reaches `StopSignals`) and where JAX's
  preemption service is off."""
  if jax.process_count() == 1 or jax.default_backend() != "tpu":
    return False
  from jax.experimental import multihost_utils
  try:
    return bool(multihost_utils.reached_preemption_sync_point(step))
  except RuntimeError:  # jax_enable_preemption_service=False: no sync manager
    return False
