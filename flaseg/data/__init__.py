"""Data: datasets (grain random-access sources), transforms and input pipelines.

`build_source(config.data, split, seed)` returns a random-access source with `num_classes`,
`class_names`, `palette` and `ignore_label`; DATASETS maps `config.data.name` to its builder.
The real datasets (flaseg.data.datasets) read `config.data.root` in each download's layout.
"""
from flaseg.data import datasets, pipeline
from flaseg.data.synthetic import SyntheticScenes


def _synthetic(cfg, split, seed):
  del seed  # the dataset itself is fixed; the training seed only changes the order/augmentation
  s = cfg.synthetic
  n = s.num_train if split == cfg.train_split else s.num_val
  return SyntheticScenes("train" if split == cfg.train_split else "val", num_examples=n,
                         height=s.height, width=s.width)


DATASETS = {
    "synthetic": _synthetic,
    "cityscapes": datasets.cityscapes,
    "cityscapes_tfds": datasets.cityscapes_tfds,
    "ade20k": datasets.ade20k,
    "voc": datasets.voc,
    "pascal_context": datasets.pascal_context,
}


def build_source(cfg, split: str, seed: int = 0):
  if cfg.name not in DATASETS:
    raise ValueError(f"config.data.name={cfg.name!r}: choose one of {sorted(DATASETS)}")
  return DATASETS[cfg.name](cfg, split, seed)
