"""Where a training run's metrics go: TensorBoard events and metrics.jsonl under
MODEL_DIR, written by process 0, kept consistent across resumes and restarts."""

import json
import os
import socket
import time
from typing import Any, Mapping, Optional

from clu import metric_writers as clu_writers
import jax
from tensorboard.compat.proto import event_pb2
import tensorflow as tf

METRICS_FILE = "metrics.jsonl"


class JsonlWriter(clu_writers.interface.MetricWriter):
  """metrics.jsonl beside the TensorBoard events: one line per write, easy to diff.

  A resumed run first drops the rows past its restored step (written after the
  checkpoint it resumes from), so each step appears once. Rows are dropped
  nowhere else: a run restarted over unreadable checkpoints keeps the old file
  under another name (`set_aside_metrics`), and a failed save drops only the rows
  past the last saved step (`hold_back_metrics`), which the rerun logs again.
  """

  def __init__(self, path: str, resumed_step: int = 0):
    if os.path.exists(path):
      _truncate_after(path, resumed_step)
    self._file = open(path, "a", encoding="utf-8")

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    self._file.write(
      json.dumps({"step": int(step), **{k: float(v) for k, v in scalars.items()}}) + "\n"
    )
    self._file.flush()

  def write_summaries(self, step, values, metadata=None):
    del step, values, metadata

  def write_images(self, step, images):
    del step, images

  def write_videos(self, step, videos):
    del step, videos

  def write_audios(self, step, audios, *, sample_rate):
    del step, audios, sample_rate

  def write_texts(self, step, texts):
    del step, texts

  def write_histograms(self, step, arrays, num_buckets=None):
    del step, arrays, num_buckets

  def write_hparams(self, hparams):
    del hparams

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    self._file.close()


def _truncate_after(path: str, step: int) -> None:
  """Keeps the rows of a metrics.jsonl up to `step` (atomically; torn last lines go too)."""
  kept = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        if json.loads(line)["step"] <= step:
          kept.append(line)
      except (ValueError, KeyError, TypeError):
        continue  # A line torn by a kill mid-write.
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    f.writelines(kept)
  os.replace(path + ".tmp", path)


def hold_back_metrics(model_dir: str, step: int) -> None:
  """Drops the rows past `step` (not saved: a rerun logs them again), in place: a failed
  save may mean a full disk, where a rewritten copy could not be written."""
  path = os.path.join(model_dir, METRICS_FILE)
  if not os.path.exists(path):
    return
  kept = 0
  with open(path, "rb") as f:
    for line in f:
      try:
        if json.loads(line)["step"] > step:
          break
      except (ValueError, KeyError, TypeError):
        break  # A torn last line.
      kept += len(line)
  os.truncate(path, kept)


def set_aside_metrics(model_dir: str) -> Optional[str]:
  """Renames metrics.jsonl of a run that starts over; returns the new name (None if none)."""
  path = os.path.join(model_dir, METRICS_FILE)
  if not os.path.exists(path):
    return None
  stamp = time.strftime("%Y%m%d-%H%M%S")
  kept = os.path.join(model_dir, f"metrics.before_restart_{stamp}.jsonl")
  os.replace(path, kept)
  return kept


def _mark_session_start(model_dir: str, step: int) -> None:
  """An events file holding TensorBoard's session marker (SessionLog START) at `step`.

  Every run writes one. Readers take the first as the start and each later one
  as a restart: they purge the earlier runs' events at `step` and after, which
  the resumed run logs again. The name sorts after earlier runs' files (older
  seconds) and before this run's own (same second and process: ".0.s" < ".N.v2").
  """
  name = (
    f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
    f"{os.getpid()}.0.session_start"
  )
  with tf.io.TFRecordWriter(os.path.join(model_dir, name)) as f:
    f.write(
      event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()
    )
    f.write(
      event_pb2.Event(
        wall_time=time.time(),
        step=step,
        session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START),
      ).SerializeToString()
    )


def make_writer(model_dir: str, resumed_step: int = 0) -> clu_writers.MetricWriter:
  """TensorBoard events + metrics.jsonl under MODEL_DIR, from process 0 only.

  After a resume, neither repeats the steps that the resumed run logs again.
  """
  if jax.process_index() != 0:
    return clu_writers.MultiWriter([])
  os.makedirs(model_dir, exist_ok=True)
  _mark_session_start(model_dir, resumed_step + 1)
  return clu_writers.AsyncWriter(
    clu_writers.MultiWriter(
      [
        clu_writers.SummaryWriter(model_dir),
        JsonlWriter(os.path.join(model_dir, METRICS_FILE), resumed_step),
      ]
    )
  )
