#!/usr/bin/env bash
# One-off: the Cityscapes zips -> TFDS array_record files that flaseg reads without TensorFlow.
#
#   scripts/prepare_cityscapes_tfds.sh MANUAL_DIR DATA_DIR
#
# MANUAL_DIR holds leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, downloaded (after
# registering) from https://www.cityscapes-dataset.com; nothing is downloaded here. DATA_DIR
# receives cityscapes/semantic_segmentation/1.0.0/ (about 11 GB: 2975 train, 500 validation,
# 1525 test examples). Building needs TensorFlow (TFDS encodes the PNG features with it), so
# it runs in its own virtual environment (FLASEG_TFDS_VENV, default /tmp/flaseg_tfds_venv);
# training then needs only tensorflow-datasets, array_record and Pillow:
#
#   python -m flaseg.main --config=configs/fla_cityscapes.py --workdir=runs/fla_cs \
#       --config.data.name=cityscapes_tfds --config.data.root=DATA_DIR
#
# TFDS stores raw labelIds (gtFine_labelIds); flaseg maps them to the 19 train ids.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 MANUAL_DIR DATA_DIR" >&2
  exit 2
fi
MANUAL_DIR=$(realpath "$1")
DATA_DIR=$(realpath -m "$2")
for f in leftImg8bit_trainvaltest.zip gtFine_trainvaltest.zip; do
  if [ ! -f "$MANUAL_DIR/$f" ]; then
    echo "$0: $MANUAL_DIR/$f not found (download it from https://www.cityscapes-dataset.com)" >&2
    exit 2
  fi
done

VENV=${FLASEG_TFDS_VENV:-/tmp/flaseg_tfds_venv}
if ! "$VENV/bin/python" -c "import tensorflow, tensorflow_datasets, importlib_resources" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet tensorflow-cpu "tensorflow-datasets==4.9.10" array_record \
      pillow importlib_resources
fi

# The same as `tfds build cityscapes/semantic_segmentation --manual_dir=$MANUAL_DIR
# --data_dir=$DATA_DIR --file_format=array_record`, through the Python API: the tfds CLI of
# tensorflow-datasets 4.9.10 also imports apache_beam, which this build does not use.
mkdir -p "$DATA_DIR"
"$VENV/bin/python" - "$MANUAL_DIR" "$DATA_DIR" <<'PY'
import sys
import tensorflow_datasets as tfds
manual_dir, data_dir = sys.argv[1:]
builder = tfds.builder("cityscapes/semantic_segmentation", data_dir=data_dir,
                       file_format="array_record")
builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
print(builder.info.splits)
PY
# TFDS's copies of the unzipped files (about as large as the zips) are no longer needed.
rm -rf "$DATA_DIR/downloads/extracted/ZIP.leftImg8bit_trainvaltest.zip" \
    "$DATA_DIR/downloads/extracted/ZIP.gtFine_trainvaltest.zip"
echo "done: use --config.data.name=cityscapes_tfds --config.data.root=$DATA_DIR"
