"""One batch contract: training reads batches from the seqio feature converters
(data/feature_converters.py, through input_pipeline); lm-eval, extrapolation, attention
maps and the benchmarks build theirs with the model's `pretraining_batch` and
`prefix_lm_batch`. Fed the same examples, both must give the same batch, field by
field, for DecLLM, DecLLM + BiAttn and RedLLM, each built by its training gins.
"""

import jax
import numpy as np
import pytest
import seqio
import tensorflow as tf

from redllm_jax import gin_utils, models
from redllm_jax.data import feature_converters
from redllm_jax.functional import EOS_ID

# arch: (model gin, data gin suffix, bindings), as the experiments gins combine them.
VARIANTS = {
  "decllm": ("decllm", "dec", ()),
  "decllm_biattn": ("decllm", "dec", ("BIDIRECTIONAL_INPUTS = True",)),
  "redllm": ("redllm", "red", ()),
}
# Prompt/answer pairs as a seqio task gives them: each feature ends with the EOS
# that the task's output features append before any converter runs.
PAIRS = (
  ([5, 6, 7, EOS_ID], [8, 9, EOS_ID]),
  ([11, EOS_ID], [12, 13, 14, 15, 16, EOS_ID]),
  ([21, 22, 23, 24, 25, 26, 27, EOS_ID], [28, EOS_ID]),
)
# Each the longest prompt or answer: both sides pad to the same widths.
FINETUNE_LENGTHS = {"inputs": 8, "targets": 6}
PACKED_LENGTHS = {"inputs": 16, "targets": 12}  # Room for every pair in one row.

Batch = dict[str, np.ndarray]


def _setup(arch: str, stage: str) -> tuple[models.BaseModel, seqio.FeatureConverter]:
  """The model and the feature converter that a training run of `arch` at `stage` builds."""
  model_gin, data, bindings = VARIANTS[arch]
  gin_utils.parse_gin(
    [f"models/{model_gin}.gin", "models/sizes/tiny.gin", f"data/{stage}_{data}.gin"], bindings
  )
  return models.from_gin(), feature_converters.make_feature_converter()


def _convert(
  converter: seqio.FeatureConverter, examples: list[dict[str, list[int]]], lengths: dict[str, int]
) -> Batch:
  """All the converter's rows for `examples`, as one numpy batch."""
  ds = tf.data.Dataset.from_generator(
    lambda: iter(examples),
    output_signature={k: tf.TensorSpec([None], tf.int32) for k in examples[0]},
  )
  return next(converter(ds, lengths).batch(len(examples)).as_numpy_iterator())


def _assert_same(converted: Batch, built: Batch) -> None:
  """Same keys, shapes and values, padding included; token ids and masks int32 on
  both sides. Loss weights are seqio's int32 and the builders' float32: the model
  reads both as float32."""
  assert sorted(converted) == sorted(built)
  for key, value in built.items():
    assert converted[key].shape == value.shape, key
    np.testing.assert_array_equal(converted[key], value, err_msg=key)
    if key != "decoder_loss_weights":
      assert converted[key].dtype == value.dtype == np.int32, key


@pytest.mark.parametrize("length", [16, 15])  # RedLLM splits an odd chunk as the converter does.
@pytest.mark.parametrize("arch", VARIANTS)
def test_pretraining_chunks_give_the_same_batch(arch: str, length: int) -> None:
  model, converter = _setup(arch, "pretrain")
  chunks = np.random.RandomState(length).randint(2, model.config.vocab_size, (3, length))
  chunks[:, length // 3] = EOS_ID  # A document boundary inside each chunk.
  converted = _convert(converter, [{"targets": c.tolist()} for c in chunks], {"targets": length})
  _assert_same(converted, model.pretraining_batch(chunks))
  # The model reads the training batch: DecLLM + BiAttn without a prefix feature too.
  loss, _ = jax.eval_shape(model.loss_fn, model.abstract_params(), converted)
  assert loss.shape == ()


@pytest.mark.parametrize("arch", VARIANTS)
def test_prompt_answer_pairs_give_the_same_batch(arch: str) -> None:
  model, _ = _setup(arch, "finetune")
  converter = feature_converters.make_feature_converter(pack=False)
  converted = _convert(converter, [{"inputs": p, "targets": a} for p, a in PAIRS], FINETUNE_LENGTHS)
  prompts, answers = zip(*PAIRS)
  # RedLLM's stacks pad to the longest prompt and answer, the task lengths here;
  # DecLLM's one row (prompt, answer) to both task lengths together, as seqio does.
  total = sum(FINETUNE_LENGTHS.values())
  pad_width = (lambda n: n) if arch == "redllm" else (lambda n: total)
  built = model.prefix_lm_batch(prompts, answers, pad_width=pad_width)
  _assert_same(converted, built)
  # Empty rows (lm-eval's last batch; input_pipeline pads a finite pass alike) are zeros.
  padded = model.prefix_lm_batch(prompts, answers, rows=len(PAIRS) + 1, pad_width=pad_width)
  for key, value in padded.items():
    np.testing.assert_array_equal(value[:-1], built[key], err_msg=key)
    assert not value[-1].any(), key


def _segments(packed: Batch) -> list[Batch]:
  """Every packed example as a one-row unpadded batch, in packing order: each feature
  cut to the example's segment, whose positions must count from 0."""
  examples = []
  for row in range(len(packed["decoder_segment_ids"])):
    for segment in range(1, packed["decoder_segment_ids"][row].max() + 1):
      example = {}
      for stack in ("encoder", "decoder"):
        if f"{stack}_segment_ids" not in packed:
          continue
        where = packed[f"{stack}_segment_ids"][row] == segment
        np.testing.assert_array_equal(
          packed[f"{stack}_positions"][row][where], np.arange(where.sum())
        )
        example.update(
          {
            k: v[row][where][None]
            for k, v in packed.items()
            if k.startswith(stack) and not k.endswith(("segment_ids", "positions"))
          }
        )
      examples.append(example)
  return examples


@pytest.mark.parametrize("arch", VARIANTS)
def test_packed_finetuning_segments_are_the_built_rows(arch: str) -> None:
  """Finetuning trains packed (the data gins' pack=True): each example's segment holds
  the row that the builder gives for it alone."""
  model, converter = _setup(arch, "finetune")
  assert converter.pack
  packed = _convert(converter, [{"inputs": p, "targets": a} for p, a in PAIRS], PACKED_LENGTHS)
  assert len(packed["decoder_segment_ids"]) < len(PAIRS)  # Some examples share a row.
  segments = _segments(packed)
  assert len(segments) == len(PAIRS)
  for (prompt, answer), segment in zip(PAIRS, segments):
    _assert_same(segment, model.prefix_lm_batch([prompt], [answer]))
