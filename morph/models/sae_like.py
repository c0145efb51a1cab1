"""What Morph needs of a sparse autoencoder: the `SAELike` protocol.

Two classes satisfy it: morph.models.saes.NativeSAE (a local folder of a covered architecture, loaded
without SAE-Lens) and sae_lens.SAE (anything else). Morph reads only these members, so the engine is typed
against this protocol rather than either class. Importing this module imports neither torch nor SAE-Lens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch


class SAEMetadataLike(Protocol):
    """The SAE's metadata (SAE-Lens's SAEMetadata, or morph.models.saes.SAEMetadata): hook names, BOS."""

    def get(self, key: str, default: Any = None) -> Any: ...  # JSON values: strings, flags, nested dicts


@runtime_checkable
class SAEConfigLike(Protocol):
    d_in: int  # the width of the activations it reads (the model's d_model)
    d_sae: int  # the number of features
    metadata: SAEMetadataLike


@runtime_checkable
class SAELike(Protocol):
    """encode: activations [..., d_in] -> features [..., d_sae]; decode: features -> activations.

    W_dec [d_sae, d_in] holds each feature's decoder direction (what decode adds per unit of the feature)."""

    cfg: SAEConfigLike
    W_dec: torch.Tensor
    dtype: torch.dtype

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor: ...

    def eval(self) -> SAELike: ...

    def named_parameters(self) -> Iterator[tuple[str, torch.Tensor]]: ...

    def named_buffers(self) -> Iterator[tuple[str, torch.Tensor]]: ...
