"""FLANet on HRNetV2-W48 with FLANet's recipe; its HRNet attachment is reconstructed
(`config_lib.flanet_on_hrnet`; FLANet's code has no HRNet version). Paper: 83.6 mIoU
Cityscapes test (Table 1), 46.99 ADE20K val (Table 4), 88.5 VOC test (Table 5).

  python -m flaseg.main --config=configs/fla_hrnet48.py --workdir=runs/fla_hrnet48 \\
      --config.data.root=/data/cityscapes
  python -m flaseg.main --config=configs/fla_hrnet48.py:dataset=ade20k ... # or dataset=voc
"""
from flaseg import config_lib

DATASETS = {"cityscapes": config_lib.cityscapes, "ade20k": config_lib.ade20k,
            "voc": config_lib.voc}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, dataset="cityscapes", smoke=False)
  if arg.dataset not in DATASETS:
    raise ValueError(f"configs/fla_hrnet48.py: dataset={arg.dataset!r}; choose one of "
                     f"{sorted(DATASETS)}")
  c = config_lib.network(DATASETS[arg.dataset], config_lib.flanet_recipe, "fla")
  if arg.dataset != "cityscapes":
    c.checkpoint.every = 5000
  config_lib.flanet_on_hrnet(c, width=48)
  return config_lib.apply_smoke(c) if arg.smoke else c
