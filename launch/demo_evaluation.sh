#!/usr/bin/env bash
# The README's worked example: evaluate, decode, extrapolate, analyse and export the
# two demo checkpoints that `make demo` trained into runs/demo/{decllm,redllm}.
#   bash launch/demo_evaluation.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
RUNS=runs/demo
for arch in decllm redllm; do
  d=${arch:0:3}
  $PY -m redllm_jax.evaluation.perplexity --gin_file=models/${arch}_tiny.gin --gin_file=data/demo_pretrain_$d.gin \
      --gin_file=runs/eval.gin --gin.CHECKPOINT_PATH=\"$RUNS/$arch\" \
      --gin.OUTPUT_DIR=\"$RUNS/$arch/eval\" --gin.EVAL_TASKS="['demo_redpajama', 'demo_paloma_pydoc']"
done
$PY -m redllm_jax.evaluation.extrapolation \
    --checkpoint=decllm=models/decllm_tiny.gin@$RUNS/decllm \
    --checkpoint=redllm=models/redllm_tiny.gin@$RUNS/redllm \
    --training_length=256 --factors=1,2,4,8 --num_sequences=16 --output_dir=$RUNS/extrapolation
$PY -m redllm_jax.evaluation.attention \
    --checkpoint=decllm=models/decllm_tiny.gin@$RUNS/decllm \
    --checkpoint=redllm=models/redllm_tiny.gin@$RUNS/redllm \
    --length=256 --num_sequences=8 --output_dir=$RUNS/attention
printf '%s\n' '{"inputs": "In the beginning God created"}' \
    '{"inputs": "The city of Paris is the capital of"}' > $RUNS/prompts.jsonl
for arch in decllm redllm; do
  d=${arch:0:3}
  $PY -m redllm_jax.evaluation.infer --gin_file=models/${arch}_tiny.gin --gin_file=data/demo_pretrain_$d.gin \
      --gin_file=runs/infer.gin --gin.CHECKPOINT_PATH=\"$RUNS/$arch\" \
      --gin.INFER_INPUT=\"$RUNS/prompts.jsonl\" --gin.INFER_OUTPUT=\"$RUNS/$arch/outputs.jsonl\" \
      --gin.infer.InferSettings.add_eos=False
done
$PY -m redllm_jax.evaluation.export --gin_file=models/redllm_tiny.gin --gin_file=data/demo_pretrain_red.gin \
    --gin_file=runs/export.gin --gin.CHECKPOINT_PATH=\"$RUNS/redllm\" --gin.EXPORT_DIR=\"$RUNS/export/redllm\"
$PY $RUNS/export/redllm/standalone.py $RUNS/export/redllm "In the beginning God created" --max_new_tokens=16
