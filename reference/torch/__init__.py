"""PyTorch peers of flaseg networks: the equivalence tests' references and the side-by-side
benchmark (`scripts/benchmark.py --reference=torch`).

Needs the reference packages (torch, mmsegmentation 1.2.2, mmcv-lite, mmengine; installed by
scripts/install_reference_packages.sh). flaseg never imports this package; it may import
flaseg (constants such as `flaseg.models.resnet.DEPTHS`, `flaseg.timing`).

* `imports`: importing torch and torchvision's operators in this environment.
* `mmseg_peers`: mmsegmentation's own `EncoderDecoder` for the heads it has.
* `flanet`: the official FLANet (deep-stem ResNet, FLA block, output module).
* `denoised_nl`: the official DenoisedNL.
* `attanet`: the official AttaNet.
* `benchmark`: train-step and inference img/s of a config's peer in PyTorch.
"""
