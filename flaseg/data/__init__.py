"""Data: datasets (grain random-access sources), transforms and input pipelines.

`build_source(config.data, split, seed)` returns a random-access source with `num_classes`,
`class_names`, `palette` and `ignore_label`; DATASETS maps `config.data.name` to its builder.
"""
import os

from flaseg.data import pipeline
from flaseg.data.synthetic import SyntheticScenes


def _synthetic(cfg, split, seed):
  del seed  # the dataset itself is fixed; the training seed only changes the order/augmentation
  s = cfg.synthetic
  n = s.num_train if split == cfg.train_split else s.num_val
  return SyntheticScenes("train" if split == cfg.train_split else "val", num_examples=n,
                         height=s.height, width=s.width)


def _cityscapes(cfg, split, seed):
  root = os.path.abspath(os.path.expanduser(cfg.root))
  if not os.path.isdir(os.path.join(root, "leftImg8bit")) or not os.path.isdir(
      os.path.join(root, "gtFine")):
    raise FileNotFoundError(
        f"Cityscapes not found: config.data.root={root} must hold leftImg8bit/ and gtFine/ "
        f"(download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from "
        f"cityscapes-dataset.com and unzip them there)")
  raise NotImplementedError(f"config.data.name='cityscapes': the Cityscapes reader for {root} "
                            f"is not implemented yet; use config.data.name='synthetic'")


DATASETS = {
    "synthetic": _synthetic,
    "cityscapes": _cityscapes,
}


def build_source(cfg, split: str, seed: int = 0):
  if cfg.name not in DATASETS:
    raise ValueError(f"config.data.name={cfg.name!r}: choose one of {sorted(DATASETS)}")
  return DATASETS[cfg.name](cfg, split, seed)
