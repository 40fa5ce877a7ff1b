"""Data: datasets (grain random-access sources), transforms and input pipelines.

`build_source(config.data, split, seed)` returns a random-access source with `num_classes`,
`class_names`, `palette` and `ignore_label` (= `config.data.ignore_label`, 255 if absent: the
label its maps give ignored pixels); DATASETS maps `config.data.name` to its builder. The real
datasets (flaseg.data.datasets) read `config.data.root` in each download's layout. Pass the
same value to `pipeline.train_dataset(..., ignore_label=)` and `pipeline.eval_batches(...,
ignore_label=)`, which pad with it.
"""
import os

import numpy as np

from flaseg.data import classes, datasets, folder, pipeline
from flaseg.data.synthetic import SyntheticScenes
from flaseg.errors import ConfigError


def _synthetic(cfg, split, seed):
  del seed  # the dataset itself is fixed; the training seed only changes the order/augmentation
  s = cfg.synthetic
  n = s.num_train if split == cfg.train_split else s.num_val
  return SyntheticScenes("train" if split == cfg.train_split else "val", num_examples=n,
                         height=s.height, width=s.width,
                         ignore_label=cfg.get("ignore_label", classes.IGNORE_LABEL))


DATASETS = {
    "synthetic": _synthetic,
    "cityscapes": datasets.cityscapes,
    "cityscapes_tfds": datasets.cityscapes_tfds,
    "ade20k": datasets.ade20k,
    "voc": datasets.voc,
    "pascal_context": datasets.pascal_context,
    "folder": folder.folder,
}


def _check_name(cfg):
  if cfg.name not in DATASETS:
    raise ConfigError(f"config.data.name={cfg.name!r}: choose one of {sorted(DATASETS)}")


def build_source(cfg, split: str, seed: int = 0):
  _check_name(cfg)
  return DATASETS[cfg.name](cfg, split, seed)


def class_names_and_palette(cfg):
  """(class names, uint8 (K, 3) palette) of dataset `cfg` without reading its images (a
  folder dataset reads its classes.json): what flaseg.predict colours predictions with."""
  _check_name(cfg)
  metas = {"cityscapes": datasets.CITYSCAPES, "cityscapes_tfds": datasets.CITYSCAPES,
           "ade20k": datasets.ADE20K, "voc": datasets.VOC,
           "pascal_context": (datasets.CONTEXT_60 if cfg.get("context_60", False)
                              else datasets.CONTEXT_59)}
  if cfg.name == "synthetic":
    return SyntheticScenes.class_names, SyntheticScenes.palette
  if cfg.name == "folder":
    spec = folder.read_classes(os.path.join(os.path.expanduser(cfg.root), "classes.json"))
    return spec["classes"], folder.palette(spec)
  meta = metas[cfg.name]
  return meta.class_names, np.asarray(meta.palette, np.uint8)
