"""Feature converters: task features -> model features (T5X names), per architecture.

  arch  stage     converter                         TASK_FEATURE_LENGTHS (paper)
  dec   pretrain  seqio.DecoderFeatureConverter      {"targets": 2048}
  red   pretrain  RedPretrainFeatureConverter        {"targets": 2048} (split in the middle)
  dec   finetune  seqio.PrefixLMFeatureConverter     {"inputs": 2048, "targets": 512}
  red   finetune  seqio.EncDecFeatureConverter       {"inputs": 2048, "targets": 512}

Both pretraining rows use the same task lengths, so both architectures read the
very same 2048-token chunks; RedLLM's converter splits each chunk in two.
"""

from typing import Any, Mapping

import gin
import seqio
import tensorflow as tf


class RedPretrainFeatureConverter(seqio.EncDecFeatureConverter):
  """Splits each pretraining chunk `targets` into encoder inputs and decoder targets.

  encoder_input_tokens = chunk[:split_point], decoder_target_tokens =
  chunk[split_point:], so the two concatenated give back the chunk. The split
  follows TASK_FEATURE_LENGTHS unless split_point is set: the middle of
  {"targets": L}, or I for {"inputs": I, "targets": T}, whose chunks of I + T
  tokens the task's preprocessor has already cut at I. Chunks no longer than the
  split (only the last chunk of a finite eval stream) are dropped: they would
  leave the decoder nothing to predict.
  """

  TASK_FEATURES = {"targets": seqio.FeatureConverter.FeatureSpec(dtype=tf.int32)}

  def __init__(self, split_point: int | None = None, **kwargs) -> None:
    super().__init__(**kwargs)
    self._split_point = split_point
    self._presplit = seqio.EncDecFeatureConverter(**kwargs)  # For chunks the task split.

  @property
  def split_point(self) -> int | None:
    """The bound split, or None: the middle of the chunk (or the task's inputs length)."""
    return self._split_point

  def __call__(
    self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]
  ) -> tf.data.Dataset:
    if "inputs" not in task_feature_lengths:
      return super().__call__(ds, task_feature_lengths)
    self.encdec_lengths(task_feature_lengths)  # Checks split_point against `inputs`.
    return self._presplit(ds.filter(lambda ex: tf.size(ex["targets"]) > 0), task_feature_lengths)

  def encdec_lengths(self, task_feature_lengths: Mapping[str, int]) -> dict[str, int]:
    """{"inputs": split, "targets": rest} for a {"targets": chunk length} task, or the
    task's own {"inputs", "targets"}."""
    if "inputs" in task_feature_lengths:
      inputs, targets = task_feature_lengths["inputs"], task_feature_lengths["targets"]
      if self._split_point not in (None, inputs):
        raise ValueError(
          f"split_point={self._split_point} contradicts the inputs length {inputs}: set one of them"
        )
      return {"inputs": inputs, "targets": targets}
    length = task_feature_lengths["targets"]
    split = length // 2 if self._split_point is None else self._split_point
    if not 0 < split < length:
      raise ValueError(
        f"split_point={split} does not fit targets length {length}: need 0 < split_point < length"
      )
    return {"inputs": split, "targets": length - split}

  def _convert_features(
    self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]
  ) -> tf.data.Dataset:
    lengths = self.encdec_lengths(task_feature_lengths)
    split = lengths["inputs"]
    ds = ds.filter(lambda ex: tf.size(ex["targets"]) > split)
    ds = ds.map(
      lambda ex: {"inputs": ex["targets"][:split], "targets": ex["targets"][split:]},
      num_parallel_calls=tf.data.AUTOTUNE,
    )
    return super()._convert_features(ds, lengths)

  def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> Mapping[str, int]:
    return super().get_model_feature_lengths(self.encdec_lengths(task_feature_lengths))


@gin.configurable
def make_feature_converter(
  arch: str, stage: str, pack: bool = True, split_point: int | None = None
) -> seqio.FeatureConverter:
  """The converter for `arch` in {"dec", "red"} and `stage` in {"pretrain", "finetune"}.

  DecLLM finetuning uses PrefixLMFeatureConverter: loss on targets only, and
  `decoder_causal_attention` marks the BOS + inputs prefix (for BiAttn).
  """
  if (arch, stage) == ("dec", "pretrain"):
    return seqio.DecoderFeatureConverter(pack=pack)
  if (arch, stage) == ("red", "pretrain"):
    return RedPretrainFeatureConverter(split_point=split_point, pack=pack)
  if (arch, stage) == ("dec", "finetune"):
    return seqio.PrefixLMFeatureConverter(loss_on_targets_only=True, pack=pack)
  if (arch, stage) == ("red", "finetune"):
    return seqio.EncDecFeatureConverter(pack=pack)
  raise ValueError(
    f"Unknown arch/stage {arch!r}/{stage!r}: arch in dec|red, stage in pretrain|finetune"
  )


_KINDS = {
  seqio.DecoderFeatureConverter: ("dec", "pretrain"),
  RedPretrainFeatureConverter: ("red", "pretrain"),
  seqio.PrefixLMFeatureConverter: ("dec", "finetune"),
  seqio.EncDecFeatureConverter: ("red", "finetune"),
}


def describe_converter(converter: seqio.FeatureConverter) -> dict[str, Any] | None:
  """`make_feature_converter`'s arguments that rebuild `converter` (what a checkpoint
  records of its run), or None for a converter it does not build."""
  kind = _KINDS.get(type(converter))
  if kind is None:
    return None
  split_point = getattr(converter, "split_point", None)  # RedLLM pretraining only
  return {"arch": kind[0], "stage": kind[1], "pack": converter.pack, "split_point": split_point}


def converter_from_description(description: Mapping[str, Any]) -> seqio.FeatureConverter:
  """The converter `describe_converter` described."""
  return make_feature_converter(
    description["arch"],
    description["stage"],
    pack=description["pack"],
    split_point=description["split_point"],
  )
