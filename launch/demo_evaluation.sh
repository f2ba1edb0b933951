#!/usr/bin/env bash
# The README's worked example: evaluate, decode, extrapolate, analyse and export the
# two demo checkpoints that `make demo` trained into runs/demo/{decllm,redllm}.
# eval prints DecLLM's second-half perplexity (the tokens RedLLM predicts) beside its
# whole-row one; eval_results.json and TensorBoard hold it as second_half_perplexity.
#   bash launch/demo_evaluation.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
RUNS=runs/demo
for arch in decllm redllm; do
  d=${arch:0:3}
  $PY -m redllm_jax.evaluation.perplexity --gin_file=data/demo_pretrain_$d.gin \
      --gin_file=runs/eval.gin --gin.CHECKPOINT_PATH=\"$RUNS/$arch\" \
      --gin.OUTPUT_DIR=\"$RUNS/$arch/eval\" --gin.EVAL_TASKS="['demo_redpajama', 'demo_paloma_pydoc']"
done
# Side by side: each checkpoint says which model it holds, so no model gin is needed.
CHECKPOINTS="{'decllm': '$RUNS/decllm', 'redllm': '$RUNS/redllm'}"
$PY -m redllm_jax.evaluation.extrapolation --gin_file=runs/extrapolation.gin \
    --gin.CHECKPOINTS="$CHECKPOINTS" --gin.OUTPUT_DIR=\"$RUNS/extrapolation\"
$PY -m redllm_jax.evaluation.attention --gin_file=runs/attention.gin \
    --gin.CHECKPOINTS="$CHECKPOINTS" --gin.OUTPUT_DIR=\"$RUNS/attention\"
printf '%s\n' '{"inputs": "In the beginning God created"}' \
    '{"inputs": "The city of Paris is the capital of"}' > $RUNS/prompts.jsonl
# No data gin: infer tokenizes with the vocabulary the checkpoint recorded.
for arch in decllm redllm; do
  $PY -m redllm_jax.evaluation.infer \
      --gin_file=runs/infer.gin --gin.CHECKPOINT_PATH=\"$RUNS/$arch\" \
      --gin.INFER_INPUT=\"$RUNS/prompts.jsonl\" --gin.INFER_OUTPUT=\"$RUNS/$arch/outputs.jsonl\" \
      --gin.infer.InferSettings.add_eos=False
done
$PY -m redllm_jax.evaluation.export \
    --gin_file=runs/export.gin --gin.CHECKPOINT_PATH=\"$RUNS/redllm\" --gin.EXPORT_DIR=\"$RUNS/export/redllm\"
$PY $RUNS/export/redllm/standalone.py $RUNS/export/redllm "In the beginning God created" --max_new_tokens=16
