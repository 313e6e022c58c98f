"""ViT image patch tokenizer: one image to flattened ``P x P`` patches at ``(row, col)`` coordinates.

Notation: C channels, H x W image height x width in pixels, P patch size, h halo (context pixels
around each patch; 0 for plain ViT patches), K = P + 2h window side, R x Q patch rows x columns,
T = R * Q tokens, F = C * K * K feature width, B batch, D model dim.

Input layouts (every image tokenizer in this package follows them):

* ``torch.Tensor``: ``(C, H, W)``, torchvision's layout; ``(H, W)`` is one channel.
* ``numpy.ndarray``: ``(H, W, C)``, the PIL / OpenCV / matplotlib layout; ``(H, W)`` is one channel.
* ``PIL.Image.Image``: modes ``L`` (1 channel), ``RGB`` (3 channels) and ``F`` (1 channel, float).

Pixel types: uint8 is scaled to [0, 1]; floating types are used as they are (conventionally
[0, 1]). bool, complex, object and every other integer type raise ``TypeError``: an int64 or
uint16 image has no agreed range (0-255? 0-65535?), so the caller converts and thereby says which.

Patches are flattened in ``(C, K, K)`` order, feature ``c*K*K + y*K + x``: the order of the weight
of timm's ViT patch embedding ``Conv2d(C, D, P, stride=P)`` (Dosovitskiy et al. 2020,
https://arxiv.org/abs/2010.11929), so ``conv.weight.reshape(D, -1)`` is our linear projection and
a converter copies it unchanged. Tokens run row-major. Nothing depends on the image size: a model
trained at one resolution runs at another, its coordinates just grow.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from modal_tf.tokenizers.base import FeatureTokenizer, Tokens
from modal_tf.tokenizers.registry import register_tokenizer

UNEVEN_MODES = ("pad", "reject")
PIL_MODES = {"L": 1, "RGB": 3, "F": 1}
_TINY_STD = 1e-7  # relative to max(1, |mean|): below it a channel is constant


def _describe(raw: Any) -> str:
    """What came, for error messages: a tensor / array's dtype and shape, or a PIL image's mode and size."""
    if isinstance(raw, Tensor | np.ndarray):
        return f"{type(raw).__name__} of dtype {raw.dtype} and shape {tuple(raw.shape)}"
    return f"PIL image of mode {raw.mode!r} and width x height {raw.size[0]}x{raw.size[1]}"


def _from_numpy(array: np.ndarray) -> Tensor:
    """``(H, W, C)`` / ``(H, W)`` array to a ``(C, H, W)`` tensor of its own dtype."""
    if array.ndim not in (2, 3):
        raise ValueError(f"numpy image must be (H, W, C) or (H, W), got shape {array.shape} (rank {array.ndim})")
    if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
        raise TypeError(
            f"numpy image must be uint8 (0-255) or floating, got dtype {array.dtype}; convert it first, "
            "e.g. array.astype(np.uint8) for 0-255 data or array.astype(np.float32) / 65535 for 16-bit data"
        )
    if array.dtype != np.uint8:  # float16/64/128 and big-endian floats: torch.from_numpy takes none of them all
        array = array.astype(np.float32, copy=False)
    # from_numpy shares memory and warns on read-only arrays; negative strides (flips) it cannot share at all.
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, order="C")
    tensor = torch.from_numpy(array)
    return tensor[None] if tensor.dim() == 2 else tensor.permute(2, 0, 1)  # (C, H, W)


def to_chw(raw: Any) -> Tensor:
    """A raw image (layouts in the module docstring) as a ``(C, H, W)`` tensor, uint8 or float32, unscaled.

    uint8 stays uint8 so that callers fold the 1/255 scaling into their normalization (one op less).

    Raises:
        TypeError: not an image type, or a pixel type with no agreed range.
        ValueError: wrong rank, or an unsupported PIL mode.
    """
    pil = sys.modules.get("PIL.Image")  # a PIL image can only exist if PIL is imported; never import it ourselves
    if pil is not None and isinstance(raw, pil.Image):
        if raw.mode not in PIL_MODES:
            raise ValueError(
                f"PIL image mode must be one of {sorted(PIL_MODES)}, got {raw.mode!r}; "
                "convert it first, e.g. image.convert('RGB') or image.convert('L')"
            )
        raw = np.array(raw)  # (H, W, C) or (H, W)
    if isinstance(raw, np.ndarray):
        image = _from_numpy(raw)
    elif isinstance(raw, Tensor):
        if raw.dim() not in (2, 3):
            raise ValueError(f"image tensor must be (C, H, W) or (H, W), got shape {tuple(raw.shape)}")
        if raw.dtype != torch.uint8 and not raw.is_floating_point():
            raise TypeError(
                f"image tensor must be uint8 (0-255) or floating, got {raw.dtype}; convert it first, "
                "e.g. tensor.to(torch.uint8) for 0-255 data or tensor.float() / 65535 for 16-bit data"
            )
        image = raw.detach().cpu()
        image = image[None] if image.dim() == 2 else image  # (C, H, W)
    else:
        raise TypeError(
            "image must be a torch.Tensor (C, H, W), a numpy.ndarray (H, W, C) or a PIL.Image.Image, "
            f"got {type(raw).__name__}"
        )
    return image if image.dtype == torch.uint8 else image.float()


@functools.lru_cache(maxsize=64)
def _grid(rows: int, cols: int) -> Tensor:
    """Row-major ``(row, col)`` coordinates ``(R*Q, 2)``; cached since a dataset has few image sizes."""
    index = torch.arange(rows * cols)
    return torch.stack([index // cols, index % cols], dim=1)  # (T, 2)


def _check_statistics(mean: Sequence[float], std: Sequence[float], channels: int, source: str) -> None:
    for name, values in (("mean", mean), ("std", std)):
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            raise TypeError(f"{source} {name} must be a list of {channels} numbers, got {type(values).__name__}")
        if len(values) != channels or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in values
        ):
            raise ValueError(f"{source} {name} must be {channels} finite numbers (one per channel), got {values!r}")
    if min(std) <= 0:
        raise ValueError(f"{source} std must be > 0 for every channel, got {list(std)}")


@register_tokenizer("patch")
class PatchTokenizer(FeatureTokenizer):
    """ViT patches: image to ``(T, C*P*P)`` normalized pixels at ``(row, col)``, linear embedding.

    Args:
        patch_size: Side P of each square patch, in pixels.
        channels: Channels C every image must have (1 grey, 3 RGB; any positive count for tensors/arrays).
        mean: Per-channel mean, in input units after uint8 scaling (e.g. ImageNet's
            ``[0.485, 0.456, 0.406]``). Give ``mean`` and ``std`` together to skip ``fit``;
            give neither to learn them with ``fit(images)``.
        std: Per-channel standard deviation, > 0.
        uneven: What to do when H or W is not a multiple of P: ``"reject"`` raises
            ``ValueError``; ``"pad"`` pads bottom/right with zeros after normalization
            (zero is the dataset mean there, the least informative value). Either way an
            image smaller than one patch is rejected.
    """

    axes = ("row", "col")
    halo: ClassVar[int] = 0  # context pixels around each patch; subclasses with a conv stem raise it

    def __init__(
        self,
        patch_size: int = 16,
        channels: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        uneven: str = "reject",
    ) -> None:
        for name, value in (("patch_size", patch_size), ("channels", channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if uneven not in UNEVEN_MODES:
            raise ValueError(f"uneven must be one of {UNEVEN_MODES}, got {uneven!r}")
        if (mean is None) != (std is None):
            raise ValueError(f"give mean and std together (or neither, to fit them); got mean={mean}, std={std}")
        self.patch_size = patch_size
        self.channels = channels
        self.uneven = uneven
        self._fixed = mean is not None  # constructor statistics: config, not fitted state
        self.mean: list[float] | None = None
        self.std: list[float] | None = None
        if mean is not None and std is not None:
            self._set_statistics(mean, std, "constructor")

    @property
    def feature_dim(self) -> int:
        """``F = C * K * K`` with ``K = patch_size + 2 * halo``."""
        return self.channels * (self.patch_size + 2 * self.halo) ** 2

    @property
    def requires_fit(self) -> bool:
        """True until statistics come from the constructor, ``fit`` or ``load_fitted_state``."""
        return self.mean is None

    def config(self) -> dict[str, Any]:
        """Constructor arguments; ``mean``/``std`` only when the constructor fixed them."""
        return {
            "patch_size": self.patch_size,
            "channels": self.channels,
            "mean": self.mean if self._fixed else None,
            "std": self.std if self._fixed else None,
            "uneven": self.uneven,
        }

    def fitted_state(self) -> dict[str, Any]:
        """``{"mean": [C floats], "std": [C floats]}`` learned by ``fit``; ``{}`` before, or with fixed statistics."""
        if self._fixed or self.mean is None:
            return {}
        return {"mean": self.mean, "std": self.std}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        """Restore ``fitted_state()`` output (``{}`` restores nothing)."""
        if not isinstance(state, dict) or (state and set(state) != {"mean", "std"}):
            raise ValueError(
                f"{type(self).__name__} fitted state must be {{}} or have keys mean and std, got {state!r}"
            )
        if state and self._fixed:
            raise ValueError(
                "this tokenizer's mean and std are fixed by its constructor; a fitted state cannot replace them"
            )
        if state:
            self._set_statistics(state["mean"], state["std"], "fitted state")

    def _set_statistics(self, mean: Sequence[float], std: Sequence[float], source: str) -> None:
        _check_statistics(mean, std, self.channels, source)
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        # (x - mean) / std as one fused addcmul: x * scale + shift, each (C, 1, 1); uint8 folds in 1/255.
        self._scale = 1.0 / torch.tensor(self.std)[:, None, None]
        self._scale_uint8 = self._scale / 255.0
        self._shift = -torch.tensor(self.mean)[:, None, None] * self._scale

    def fit(self, samples: Iterable[Any]) -> None:
        """Learn per-channel mean and std (population) over every pixel of ``samples``.

        A no-op when the constructor fixed ``mean``/``std`` (nothing to learn, as for any
        tokenizer without statistics). Images are validated like ``encode`` inputs; a channel
        constant over the whole dataset gets std 1 with a warning instead of dividing by zero.
        """
        if self._fixed:
            return
        count = 0
        mean = torch.zeros(self.channels, dtype=torch.float64)
        m2 = torch.zeros(self.channels, dtype=torch.float64)  # sum of squared deviations from the mean
        for index, raw in enumerate(samples):
            try:
                image = self._checked(raw)
                pixels = image.double().flatten(1) / (255.0 if image.dtype == torch.uint8 else 1.0)  # (C, H*W)
            except (TypeError, ValueError) as error:
                raise type(error)(f"fit: image {index}: {error}") from None
            # Chan et al.'s pairwise merge of (count, mean, M2): stable where sum-of-squares cancels
            # (https://en.wikipedia.org/wiki/Algorithms_for_calculating_variance#Parallel_algorithm).
            n = pixels.shape[1]
            image_mean = pixels.mean(1)
            delta = image_mean - mean
            total = count + n
            mean = mean + delta * (n / total)
            m2 = m2 + ((pixels - image_mean[:, None]) ** 2).sum(1) + delta**2 * (count * n / total)
            count = total
        if count == 0:
            raise ValueError("fit needs at least one image, got none")
        std = (m2 / count).sqrt()
        constant = std <= _TINY_STD * mean.abs().clamp_min(1.0)
        if constant.any():
            warnings.warn(
                f"channels {constant.nonzero().flatten().tolist()} are constant over the fitted images; "
                "using std 1 for them",
                stacklevel=2,
            )
            std = torch.where(constant, torch.ones_like(std), std)
        self._set_statistics(mean.tolist(), std.tolist(), "fitted")

    def _checked(self, raw: Any) -> Tensor:
        """``to_chw`` plus this tokenizer's checks: channels, size against P, finite pixels. ``(C, H, W)``, unscaled."""
        image = to_chw(raw)
        channels, height, width = image.shape
        size, p = f"{height}x{width}", self.patch_size
        if height == 0 or width == 0:
            raise ValueError(f"image is empty: height x width = {size} ({_describe(raw)})")
        if channels != self.channels:
            raise ValueError(
                f"image must have {self.channels} channel(s), got {channels} ({_describe(raw)}); "
                "torch tensors are (C, H, W), numpy arrays (H, W, C)"
            )
        if height < p or width < p:
            raise ValueError(f"image of {size} pixels is smaller than one patch of {p}x{p} (patch_size={p})")
        if self.uneven == "reject" and (height % p or width % p):
            raise ValueError(
                f"image size {size} is not a multiple of patch_size={p}; resize or crop it, "
                "or build the tokenizer with uneven='pad'"
            )
        # uint8 is always finite; for floats a float64 sum is non-finite iff some pixel is (NaN and inf
        # propagate, finite float32 cannot overflow it) and costs half of isfinite().all().
        if image.dtype != torch.uint8 and not bool(image.sum(dtype=torch.float64).isfinite()):
            raise ValueError(f"image has NaN or inf pixels ({_describe(raw)})")
        return image

    def encode(self, raw: Any) -> Tokens:
        """Image to ``Tokens``: values ``(T, F)`` float32 normalized patches, coords ``(T, 2)`` (row, col).

        Raises:
            TypeError: not an image, or an unsupported pixel type.
            ValueError: not fitted, wrong rank or channel count, empty, smaller than a patch,
                not a multiple of ``patch_size`` with ``uneven="reject"``, or NaN/inf pixels.
        """
        if self.mean is None:
            raise ValueError(
                f"{type(self).__name__} is not fitted: call fit(images) first, or pass mean and std to the constructor"
            )
        image = self._checked(raw)
        scale = self._scale_uint8 if image.dtype == torch.uint8 else self._scale
        image = torch.addcmul(self._shift, image, scale)  # (C, H, W) float32, normalized
        p, h = self.patch_size, self.halo
        pad_bottom, pad_right = -image.shape[1] % p, -image.shape[2] % p  # 0 unless uneven="pad"
        if h or pad_bottom or pad_right:
            image = torch.nn.functional.pad(image, (h, h + pad_right, h, h + pad_bottom))  # (C, R*P + 2h, Q*P + 2h)
        # Windows of side K = P + 2h every P pixels; for h = 0 these are the plain ViT patches.
        windows = image.unfold(1, p + 2 * h, p).unfold(2, p + 2 * h, p)  # (C, R, Q, K, K)
        rows, cols = windows.shape[1], windows.shape[2]
        # permute + reshape, not einops.rearrange: its recipe lookup cost ~15% of encode at 32x32 (measured).
        values = windows.permute(1, 2, 0, 3, 4).reshape(rows * cols, -1)  # (R, Q, C, K, K) -> (T, F), timm's order
        return Tokens(values, _grid(rows, cols).clone())  # clone: callers may write into their coords
