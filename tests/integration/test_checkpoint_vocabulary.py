"""Checkpoints record their vocabulary: path and sha256 in meta, a copy in MODEL_DIR."""

import shutil

import jax
import jax.numpy as jnp
import pytest

from conftest import init, make_model
from redllm_jax import checkpoints
from redllm_jax.data import vocabulary
from redllm_jax.errors import ConfigError

OPT_STATE = {"count": jnp.zeros((), jnp.int32)}  # orbax saves no empty item


def _save(model_dir, vocab_file=None, step=3):
  """A real checkpoint of a small model, its meta recording `vocab_file` (if any)."""
  model = make_model("decllm")
  meta = model.describe()
  if vocab_file:
    meta["vocabulary"] = vocabulary.record_vocabulary(str(model_dir), str(vocab_file))
  saver = checkpoints.Checkpointer(str(model_dir), save_every=1, async_save=False)
  saver.save(step, init(model), OPT_STATE, meta, force=True)
  saver.close()


def _vocab(path, content=b"spm model bytes"):
  path.write_bytes(content)
  return path


def test_vocabulary_path_prefers_the_copy_then_the_recorded_file(tmp_path):
  vocab = _vocab(tmp_path / "spm.model")
  _save(tmp_path / "run", vocab)
  copy = tmp_path / "run" / "vocabulary" / "spm.model"
  assert copy.read_bytes() == vocab.read_bytes()
  for where in ("run", "run/checkpoints", "run/checkpoints/3"):  # every form _locate takes
    assert vocabulary.vocabulary_path(str(tmp_path / where)) == str(copy)
  copy.write_bytes(b"changed")  # a copy that no longer matches is passed over
  assert vocabulary.vocabulary_path(str(tmp_path / "run")) == str(vocab)
  # A MODEL_DIR copied elsewhere carries its vocabulary, even once the original is gone.
  _vocab(copy, vocab.read_bytes())
  shutil.copytree(tmp_path / "run", tmp_path / "moved")
  vocab.unlink()
  moved_copy = tmp_path / "moved" / "vocabulary" / "spm.model"
  assert vocabulary.vocabulary_path(str(tmp_path / "moved")) == str(moved_copy)
  moved_copy.unlink()
  with pytest.raises(ConfigError) as e:
    vocabulary.vocabulary_path(str(tmp_path / "moved"))
  assert "missing or changed" in e.value.message and str(vocab) in e.value.message
  assert "\n" not in e.value.message


def test_check_vocabulary_names_both_files_when_the_bytes_differ(tmp_path):
  vocab = _vocab(tmp_path / "spm.model")
  _save(tmp_path / "run", vocab)
  same_bytes = _vocab(tmp_path / "elsewhere.model", vocab.read_bytes())
  vocabulary.check_vocabulary(str(tmp_path / "run"), str(same_bytes), "task a")  # passes
  other = _vocab(tmp_path / "other.model", b"spm model bytes, retrained")
  with pytest.raises(ConfigError) as e:
    vocabulary.check_vocabulary(str(tmp_path / "run"), str(other), "task b")
  message = e.value.message
  assert message.startswith("task b uses the vocabulary") and "\n" not in message
  assert str(other) in message and str(vocab) in message
  with pytest.raises(ConfigError, match="task c: vocabulary file not found"):
    vocabulary.check_vocabulary(str(tmp_path / "run"), str(tmp_path / "none.model"), "task c")


def test_a_model_dir_keeps_its_first_vocabulary(tmp_path):
  _save(tmp_path / "run", _vocab(tmp_path / "spm.model"))
  (tmp_path / "new").mkdir()
  retrained = _vocab(tmp_path / "new" / "spm.model", b"other bytes")  # same name, other bytes
  with pytest.raises(ConfigError, match="was trained with the vocabulary .*sha256 differs"):
    vocabulary.record_vocabulary(str(tmp_path / "run"), str(retrained))
  # Resuming with a different vocabulary is refused by the restore too (meta against meta).
  model = make_model("decllm")
  expected = dict(model.describe(), vocabulary={"path": str(retrained), "sha256": "0" * 64})
  saver = checkpoints.Checkpointer(str(tmp_path / "run"), save_every=1)
  abstract = model.abstract_params()
  with pytest.raises(ConfigError, match="sha256 differs"):
    saver.restore_latest(abstract, jax.eval_shape(lambda: OPT_STATE), expected)
  saver.close()


def test_a_checkpoint_without_a_record(tmp_path, caplog):
  """Written before checkpoints recorded vocabularies: the user must name one."""
  _save(tmp_path / "old")
  with pytest.raises(ConfigError, match="records no vocabulary"):
    vocabulary.vocabulary_path(str(tmp_path / "old"))
  vocabulary.check_vocabulary(str(tmp_path / "old"), str(tmp_path / "any.model"), "task a")
  assert "records no vocabulary" in caplog.text
