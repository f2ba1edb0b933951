"""The memory pre-flight's estimate against XLA's own figures for the compiled train step.

The refusal itself (an oversized model stops before compiling, one line, exit 2) runs
as a subprocess in tests/integration/test_config_commands.py.
"""

import jax
import pytest

from redllm_jax import errors, gin_utils, memory_check, models, optimizers
from redllm_jax.partitioning import Partitioner
from redllm_jax.tools.tpu_compile import memory_figures
from redllm_jax.trainer import compile_steps


@pytest.mark.parametrize("remat", ["none", "full"])
def test_the_estimate_is_within_a_factor_two_of_xla(remat):
  gin_utils.parse_gin(
    ["experiments/demo_pretrain_redllm.gin"],
    ["MODEL_DIR = '/unused'", f"config.TransformerConfig.remat_policy = '{remat}'"],
    finalize=False,
  )
  model = models.from_gin()
  partitioner = Partitioner()
  schedule = optimizers.learning_rate_schedule(peak=0.01, decay_steps=1, kind="constant")
  steps = compile_steps(model, optimizers.make_optimizer, partitioner, 1)
  batch = model.abstract_batch({"inputs": 128, "targets": 128}, 16, partitioner.batch_sharding())
  compiled = steps.train.lower(
    steps.abstract_state, batch, jax.eval_shape(lambda: jax.random.key(0)), schedule
  ).compile()
  xla = memory_figures(compiled, 0.0)["total"]
  estimate = memory_check.estimate(
    model, steps.abstract_state, 16, {k: v.shape[1] for k, v in batch.items()}, 1
  )
  assert 0.5 < estimate["total"] / xla < 2.0, (estimate, xla)


def test_a_step_past_the_limit_is_one_line_with_its_figures():
  figures = {
    "parameters": 2**30,
    "optimizer_state": 2**29,
    "gradients": 2**30,
    "activations": 2**31,
    "total": 4.5 * 2**30,
  }
  memory_check.check(figures, 5 * 2**30, "host RAM")  # fits: nothing
  with pytest.raises(errors.ConfigError) as e:
    memory_check.check(figures, 4 * 2**30, "host RAM")
  assert e.value.message.startswith(
    "the train step needs about 4.50 GiB per device (parameters 1.00, optimizer state 0.50, "
    "gradients 1.00, activations 2.00 GiB), more than the 4.00 GiB of host RAM"
  )
