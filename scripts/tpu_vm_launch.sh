#!/usr/bin/env bash
# Runs flaseg on a Cloud TPU VM, one host or a pod slice: the same command on every worker
# (`gcloud compute tpus tpu-vm ssh --worker=all`), one process per host, and
# `python -m flaseg.main --jax_distributed` finds the other hosts by itself.
#
#   export TPU_NAME=my-v4-32 ZONE=us-central2-b BUCKET=my-bucket
#   export FLASEG_REPO=https://github.com/OWNER/flaseg.git   # where to clone flaseg from
#   bash scripts/tpu_vm_launch.sh setup      # once per TPU VM: install flaseg, mount the bucket
#   bash scripts/tpu_vm_launch.sh train      # start (or resume) RUN in the background
#   bash scripts/tpu_vm_launch.sh logs       # follow worker 0's log
#   bash scripts/tpu_vm_launch.sh stop       # SIGTERM: checkpoint at the current step, exit
#   bash scripts/tpu_vm_launch.sh eval       # evaluate RUN's latest checkpoint
#
# Settings (environment): CONFIG (default configs/fla_cityscapes.py), RUN (default fla), and
# everything after the subcommand goes to flaseg.main, e.g.
#   bash scripts/tpu_vm_launch.sh train --config.data.root=/gcs/my-bucket/cityscapes
# The workdir is /gcs/$BUCKET/runs/$RUN: the bucket mounted with gcsfuse on every worker,
# because all hosts write their checkpoint shards into the same folder.
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${BUCKET:?set BUCKET}"
FLASEG_REPO="${FLASEG_REPO:-https://github.com/OWNER/flaseg.git}"
CONFIG="${CONFIG:-configs/fla_cityscapes.py}"
RUN="${RUN:-fla}"
WORKDIR="/gcs/${BUCKET}/runs/${RUN}"
LOG="\$HOME/flaseg_${RUN}.log"

cmd="${1:-}"
shift || true
extra="$*"

on_workers() {  # on_workers WORKER COMMAND
  gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}" --worker="$1" --command="$2"
}

case "${cmd}" in
  setup)
    on_workers all "set -e
      if [ ! -d \$HOME/flaseg ]; then git clone ${FLASEG_REPO} \$HOME/flaseg; fi
      cd \$HOME/flaseg && git pull --ff-only
      python3 -m pip install -q -e . 'jax[tpu]==0.10.2'
      if ! command -v gcsfuse > /dev/null; then
        echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -cs) main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list
        curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc > /dev/null
        sudo apt-get update -q && sudo apt-get install -y -q gcsfuse
      fi
      sudo mkdir -p /gcs/${BUCKET} && sudo chown \$USER /gcs/${BUCKET}
      mountpoint -q /gcs/${BUCKET} || gcsfuse --implicit-dirs --rename-dir-limit=200000 ${BUCKET} /gcs/${BUCKET}
      mkdir -p /gcs/${BUCKET}/runs"
    ;;
  train|eval)
    # nohup: the run survives the ssh session; a second `train` resumes from the checkpoint.
    on_workers all "cd \$HOME/flaseg && nohup python3 -m flaseg.main --config=${CONFIG} \
      --workdir=${WORKDIR} --jax_distributed --mode=${cmd} ${extra} > ${LOG} 2>&1 &"
    echo "started on all workers of ${TPU_NAME}; workdir ${WORKDIR}; log: $0 logs"
    ;;
  logs)
    on_workers 0 "tail -n 50 -f ${LOG}"
    ;;
  stop)
    on_workers all "pkill -TERM -f 'flaseg.main --config=${CONFIG} --workdir=${WORKDIR}' || true"
    ;;
  *)
    sed -n '2,18p' "$0"
    exit 2
    ;;
esac
