"""Splits and masks on the real demo corpus: the RedLLM chunk split, the DecLLM
finetuning loss mask and BiAttn prefix, and packing boundaries."""

import numpy as np
import pytest
import seqio
import sentencepiece as spm

from redllm_jax import gin_utils
from redllm_jax.data import feature_converters

CHUNK = 256
FT_LENGTHS = {"inputs": 64, "targets": 32}


@pytest.fixture(scope="module")
def tasks(demo_root: str) -> None:
  import redllm_jax_tasks  # noqa: F401


def _chunks_ds(task: str):
  return seqio.get_mixture_or_task(task).get_dataset(
    {"targets": CHUNK}, split="validation", shuffle=False, num_epochs=1
  )


def _convert(ds, converter: seqio.FeatureConverter, lengths) -> list[dict[str, np.ndarray]]:
  return list(converter(ds, lengths).as_numpy_iterator())


def test_pretraining_chunks_are_the_concatenated_documents(tasks, demo_root: str) -> None:
  task = seqio.get_mixture_or_task("demo_redpajama_book")
  sp = spm.SentencePieceProcessor(model_file=f"{demo_root}/vocab/spm_4096_bpe.model")
  docs = [
    ex["text"].decode()
    for ex in task.source.get_dataset("validation", shuffle=False).as_numpy_iterator()
  ]
  expected = np.concatenate([ids + [1] for ids in sp.encode(docs)])  # EOS after every document
  chunks = [ex["targets"] for ex in _chunks_ds("demo_redpajama_book").as_numpy_iterator()]
  assert all(len(c) == CHUNK for c in chunks[:-1]) and 0 < len(chunks[-1]) <= CHUNK
  np.testing.assert_array_equal(np.concatenate(chunks), expected)


def test_red_split_halves_reconstruct_the_dec_chunk(tasks) -> None:
  ds = _chunks_ds("demo_redpajama_wikipedia")
  dec = _convert(
    ds, feature_converters.make_feature_converter("dec", "pretrain"), {"targets": CHUNK}
  )
  red = _convert(
    ds, feature_converters.make_feature_converter("red", "pretrain"), {"targets": CHUNK}
  )
  assert len(dec) > 50 and len(red) >= len(dec) - 1  # only a short last chunk may be dropped
  half = np.arange(CHUNK // 2)
  for d, r in zip(dec[:-1], red):  # full chunks
    assert r["encoder_input_tokens"].shape == r["decoder_target_tokens"].shape == (CHUNK // 2,)
    np.testing.assert_array_equal(
      np.concatenate([r["encoder_input_tokens"], r["decoder_target_tokens"]]),
      d["decoder_target_tokens"],
    )
    np.testing.assert_array_equal(
      r["decoder_input_tokens"], np.r_[0, r["decoder_target_tokens"][:-1]]
    )
    np.testing.assert_array_equal(
      d["decoder_input_tokens"], np.r_[0, d["decoder_target_tokens"][:-1]]
    )
    assert r["decoder_loss_weights"].all() and d["decoder_loss_weights"].all()
    np.testing.assert_array_equal(r["encoder_positions"], half)  # decoder positions are relative:
    np.testing.assert_array_equal(
      r["decoder_positions"], half
    )  # the network adds the encoder length
    assert (r["encoder_segment_ids"] == 1).all() and (r["decoder_segment_ids"] == 1).all()


def test_red_split_point_is_configurable_and_checked(tasks) -> None:
  ds = _chunks_ds("demo_redpajama_book").take(3)
  red = _convert(
    ds,
    feature_converters.make_feature_converter("red", "pretrain", split_point=100),
    {"targets": CHUNK},
  )
  dec = _convert(
    ds, feature_converters.make_feature_converter("dec", "pretrain"), {"targets": CHUNK}
  )
  for d, r in zip(dec, red):
    assert (r["encoder_input_tokens"].shape, r["decoder_target_tokens"].shape) == ((100,), (156,))
    np.testing.assert_array_equal(
      np.concatenate([r["encoder_input_tokens"], r["decoder_target_tokens"]]),
      d["decoder_target_tokens"],
    )
  for bad in (0, CHUNK, CHUNK + 1):
    converter = feature_converters.make_feature_converter("red", "pretrain", split_point=bad)
    with pytest.raises(
      ValueError, match=rf"^split_point={bad} does not fit targets length {CHUNK}: [^\n]*$"
    ):
      converter.get_model_feature_lengths({"targets": CHUNK})


def test_red_split_follows_task_feature_lengths_inputs_from_the_gin_alone(tasks) -> None:
  gin_utils.parse_gin(["data/demo_pretrain_red.gin"], [], finalize=False)
  lengths = {"inputs": 100, "targets": CHUNK - 100}
  task = seqio.get_mixture_or_task("demo_redpajama_book")
  ds = task.get_dataset(lengths, split="validation", shuffle=False, num_epochs=1).take(3)
  red = _convert(ds, feature_converters.make_feature_converter(), lengths)
  dec = _convert(
    _chunks_ds("demo_redpajama_book").take(3),
    feature_converters.make_feature_converter("dec", "pretrain"),
    {"targets": CHUNK},
  )
  assert len(red) == 3
  for d, r in zip(dec, red):  # The same chunk as DecLLM's {"targets": I + T}, cut at I.
    assert (r["encoder_input_tokens"].shape, r["decoder_target_tokens"].shape) == ((100,), (156,))
    np.testing.assert_array_equal(
      np.concatenate([r["encoder_input_tokens"], r["decoder_target_tokens"]]),
      d["decoder_target_tokens"],
    )
  contradiction = feature_converters.make_feature_converter("red", "pretrain", split_point=128)
  with pytest.raises(
    ValueError, match=r"^split_point=128 contradicts the inputs length 100: [^\n]*$"
  ):
    contradiction.get_model_feature_lengths(lengths)


def _examples(task: str) -> list[dict[str, np.ndarray]]:
  ds = seqio.get_mixture_or_task(task).get_dataset(FT_LENGTHS, split="validation", shuffle=False)
  return list(ds.as_numpy_iterator())


def test_dec_finetuning_loss_mask_and_biattn_prefix(tasks) -> None:
  examples = _examples("demo_flan")
  ds = seqio.get_mixture_or_task("demo_flan").get_dataset(
    FT_LENGTHS, split="validation", shuffle=False
  )
  rows = _convert(
    ds, feature_converters.make_feature_converter("dec", "finetune", pack=False), FT_LENGTHS
  )
  assert len(rows) == len(examples) > 100
  for ex, row in zip(examples, rows):
    n_in, n_t = len(ex["inputs"]), len(ex["targets"])
    assert ex["inputs"][-1] == 1 and ex["targets"][-1] == 1  # both EOS-terminated
    length = sum(FT_LENGTHS.values())
    np.testing.assert_array_equal(
      row["decoder_target_tokens"],
      np.pad(np.r_[ex["inputs"], ex["targets"]], (0, length - n_in - n_t)),
    )
    idx = np.arange(length)
    np.testing.assert_array_equal(row["decoder_loss_weights"], (idx >= n_in) & (idx < n_in + n_t))
    # BiAttn prefix: the BOS (pad) slot plus every input token, i.e. [0, n_in].
    np.testing.assert_array_equal(row["decoder_causal_attention"], idx <= n_in)
    np.testing.assert_array_equal(
      row["decoder_input_tokens"], np.r_[0, row["decoder_target_tokens"][:-1]]
    )


def _segments(row: dict[str, np.ndarray], prefix: str, tokens_key: str) -> list[np.ndarray]:
  """Checks positions restart and inputs shift within each segment; returns the segments' tokens."""
  seg, pos = row[f"{prefix}_segment_ids"], row[f"{prefix}_positions"]
  out = []
  for s in range(1, seg.max() + 1):
    where = np.flatnonzero(seg == s)
    assert (np.diff(where) == 1).all()  # segments are contiguous
    np.testing.assert_array_equal(pos[where], np.arange(len(where)))
    tokens = row[tokens_key][where]
    if prefix == "decoder":
      np.testing.assert_array_equal(row["decoder_input_tokens"][where], np.r_[0, tokens[:-1]])
    out.append(tokens)
  assert (row[tokens_key][seg == 0] == 0).all()
  return out


def test_packing_boundaries_red_finetuning(tasks) -> None:
  examples = _examples("demo_flan")
  ds = seqio.get_mixture_or_task("demo_flan").get_dataset(
    FT_LENGTHS, split="validation", shuffle=False
  )
  rows = _convert(
    ds, feature_converters.make_feature_converter("red", "finetune", pack=True), FT_LENGTHS
  )
  assert len(rows) < len(examples)  # some examples share a row
  pairs = []
  for row in rows:
    enc = _segments(row, "encoder", "encoder_input_tokens")
    dec = _segments(row, "decoder", "decoder_target_tokens")
    assert len(enc) == len(dec)  # encoder segment k and decoder segment k are one example
    pairs += [(tuple(e), tuple(d)) for e, d in zip(enc, dec)]
  assert sorted(pairs) == sorted((tuple(ex["inputs"]), tuple(ex["targets"])) for ex in examples)


def test_packing_boundaries_dec_finetuning(tasks) -> None:
  examples = _examples("demo_flan")
  ds = seqio.get_mixture_or_task("demo_flan").get_dataset(
    FT_LENGTHS, split="validation", shuffle=False
  )
  rows = _convert(
    ds, feature_converters.make_feature_converter("dec", "finetune", pack=True), FT_LENGTHS
  )
  assert len(rows) < len(examples)  # some examples share a row
  by_concat = {tuple(np.r_[ex["inputs"], ex["targets"]]): len(ex["inputs"]) for ex in examples}
  seen = []
  for row in rows:
    for s, tokens in enumerate(_segments(row, "decoder", "decoder_target_tokens"), start=1):
      n_in = by_concat[tuple(tokens)]
      where = row["decoder_segment_ids"] == s
      local = np.arange(len(tokens))
      np.testing.assert_array_equal(row["decoder_causal_attention"][where], local <= n_in)
      np.testing.assert_array_equal(row["decoder_loss_weights"][where], local >= n_in)
      seen.append(tuple(tokens))
  assert sorted(seen) == sorted(tuple(np.r_[ex["inputs"], ex["targets"]]) for ex in examples)
