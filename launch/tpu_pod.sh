#!/usr/bin/env bash
# Runs a training job on every worker of a Cloud TPU VM pod slice.
#
#   TPU_NAME=my-v4-128 ZONE=us-central2-b \
#   launch/tpu_pod.sh --gin_file=experiments/pretrain_redllm.gin --gin_file=models/sizes/8b.gin \
#       --gin.MODEL_DIR=\"gs://my-bucket/redllm_8b\"
#
# Every worker clones nothing: it expects this repo at ~/redllm-jax (copy it once
# with `gcloud compute tpus tpu-vm scp --recurse . $TPU_NAME:~/redllm-jax
# --worker=all`) and installs it with the TPU build of jax. jax.distributed finds
# its peers from the TPU metadata (--distributed=auto). REDLLM_DATA_DIR should be a
# gs:// path that every worker can read.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
# Quoted for the remote shell: paths and gin strings may hold spaces or quotes.
ARGS=$(printf '%q ' "$@")
DATA_DIR=$(printf '%q' "${REDLLM_DATA_DIR:-}")
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command "
  cd ~/redllm-jax &&
  ( test -d .venv || (python3 -m venv .venv && .venv/bin/pip install -q -e . 'jax[tpu]>=0.10.2,<0.11') ) &&
  REDLLM_DATA_DIR=$DATA_DIR .venv/bin/python -m redllm_jax.train --distributed=auto $ARGS"
