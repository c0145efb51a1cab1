"""Native inference SAEs read from SAE-Lens's on-disk format (cfg.json + sae_weights.safetensors).

`import sae_lens` costs seconds (it pulls in transformer_lens); these small classes load a local SAE folder
without it and compute exactly what SAE-Lens's inference classes compute (sae_lens/saes/{sae,standard_sae,
topk_sae,jumprelu_sae}.py, loaded as `SAE.load_from_disk` does). One class per architecture behind one
interface; `load_native_sae` returns None for anything they do not cover (other architectures, pre-6.0
configs, hook_z reshaping, unexpected weights), and the caller then goes through SAE-Lens.

BatchTopK SAEs are saved by SAE-Lens as "jumprelu" (their batch threshold becomes a per-feature one), so
they load here as JumpReLU SAEs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

CFG_FILENAME = "cfg.json"
SPARSE_DECODE_DENSITY = 8
"""decode sums active decoder rows when at most 1 in this many activations is nonzero (else the dense product)."""
ENCODE_CHUNK = 512  # rows of pre-activations a sparse encode holds at once (4,608 features: 9 MB)
WEIGHTS_FILENAME = "sae_weights.safetensors"

_DTYPES = {
    "float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "torch.float32": torch.float32, "torch.float64": torch.float64, "torch.float16": torch.float16,
    "torch.bfloat16": torch.bfloat16,
}
_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
                torch.bfloat16: "bfloat16"}
# what SAE-Lens's inference classes do with each setting: the rest (covariance whitening, ...) go to SAE-Lens
_NORMALIZATIONS = ("none", "expected_average_only_in", "constant_norm_rescale", "layer_norm")


@dataclass(frozen=True)
class SparseActs:
    """Feature activations of n rows in CSR form: row i's active features are indices[indptr[i]:indptr[i+1]]
    (ascending), with values[...] (all nonzero). What `encode` gives, without its dense [n, d_sae] matrix."""

    indptr: torch.Tensor  # [n + 1], long
    indices: torch.Tensor  # [nnz], long
    values: torch.Tensor  # [nnz]

    @classmethod
    def from_dense(cls, dense: torch.Tensor) -> SparseActs:
        rows, cols = dense.nonzero(as_tuple=True)
        indptr = torch.zeros(len(dense) + 1, dtype=torch.long, device=dense.device)
        indptr[1:] = torch.bincount(rows, minlength=len(dense)).cumsum(0)
        return cls(indptr, cols, dense[rows, cols])

    def rows(self, start: int, end: int) -> SparseActs:
        """Rows [start, end)."""
        lo, hi = int(self.indptr[start]), int(self.indptr[end])
        return SparseActs(self.indptr[start:end + 1] - lo, self.indices[lo:hi], self.values[lo:hi])


def encode_sparse(sae: Any, x: torch.Tensor) -> SparseActs:
    """`sae.encode(x)` ([n, d_in]) in CSR form: a native TopK SAE keeps its top k and never builds the dense
    matrix (on the analyzer's 8,000-token document that matrix is 147 MB); any other SAE encodes densely."""
    if isinstance(sae, TopKSAE):
        return sae.encode_sparse(x)
    return SparseActs.from_dense(sae.encode(x))


def decode_sparse(sae: Any, acts: SparseActs) -> torch.Tensor:
    """`sae.decode` of activations in CSR form: a native SAE sums the active decoder rows; another densifies."""
    if isinstance(sae, NativeSAE):
        return sae.decode_sparse(acts)
    dense = torch.zeros((len(acts.indptr) - 1, sae.W_dec.shape[0]), dtype=acts.values.dtype,
                        device=acts.values.device)
    rows = torch.repeat_interleave(torch.arange(len(dense), device=dense.device), acts.indptr.diff())
    dense[rows, acts.indices] = acts.values
    return sae.decode(dense)


class SAEMetadata:
    """SAE-Lens's metadata semantics: attributes and keys, None for what was never set."""

    def __init__(self, **kwargs: Any):
        self.__dict__.update(kwargs)

    def __getattr__(self, name: str) -> None:
        if name.startswith("__"):
            raise AttributeError(name)  # keep the copy and serialisation protocols intact
        return None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__.get(key, default)

    def keys(self):  # noqa: ANN201
        return self.__dict__.keys()

    def values(self):  # noqa: ANN201
        return self.__dict__.values()

    def items(self):  # noqa: ANN201
        return self.__dict__.items()

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"SAEMetadata({self.__dict__})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SAEMetadata) and self.__dict__ == other.__dict__


@dataclass
class NativeSAEConfig:
    d_in: int
    d_sae: int
    dtype: str = "float32"
    device: str = "cpu"
    apply_b_dec_to_input: bool = True
    normalize_activations: str = "none"
    reshape_activations: str = "none"
    metadata: SAEMetadata = field(default_factory=SAEMetadata)
    k: int = 100  # topk only
    rescale_acts_by_decoder_norm: bool = False  # topk only
    arch: str = "standard"

    def architecture(self) -> str:
        return self.arch


class NativeSAE(nn.Module):
    """The shared part: parameters, input processing and run-time normalisation (SAE-Lens's `SAE`)."""

    ARCHITECTURE = ""
    PARAMETERS: tuple[str, ...] = ("W_enc", "b_enc", "W_dec", "b_dec")

    W_enc: nn.Parameter  # [d_in, d_sae]
    b_enc: nn.Parameter  # [d_sae]
    W_dec: nn.Parameter  # [d_sae, d_in]
    b_dec: nn.Parameter  # [d_in]

    def __init__(self, cfg: NativeSAEConfig, state: dict[str, torch.Tensor]):
        super().__init__()
        self.cfg = cfg
        self.dtype = _DTYPES[cfg.dtype]
        self.device = torch.device(cfg.device)
        for name in self.PARAMETERS:
            setattr(self, name, nn.Parameter(state[name]))
        self._setup_activation_normalization()

    def _setup_activation_normalization(self) -> None:
        mode = self.cfg.normalize_activations
        if mode == "constant_norm_rescale":
            def norm_in(x: torch.Tensor) -> torch.Tensor:
                self.x_norm_coeff = (self.cfg.d_in**0.5) / x.norm(dim=-1, keepdim=True)
                return x * self.x_norm_coeff

            def norm_out(x: torch.Tensor) -> torch.Tensor:
                x = x / self.x_norm_coeff
                del self.x_norm_coeff
                return x
        elif mode == "layer_norm":
            def norm_in(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
                mu = x.mean(dim=-1, keepdim=True)
                x = x - mu
                std = x.std(dim=-1, keepdim=True)
                x = x / (std + eps)
                self.ln_mu = mu
                self.ln_std = std
                return x

            def norm_out(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:  # noqa: ARG001
                x = x * self.ln_std + self.ln_mu
                del self.ln_mu
                del self.ln_std
                return x
        else:
            def norm_in(x: torch.Tensor) -> torch.Tensor:
                return x

            norm_out = norm_in
        self.run_time_activation_norm_fn_in: Callable[[torch.Tensor], torch.Tensor] = norm_in
        self.run_time_activation_norm_fn_out: Callable[[torch.Tensor], torch.Tensor] = norm_out

    def process_sae_in(self, sae_in: torch.Tensor) -> torch.Tensor:
        sae_in = sae_in.to(self.dtype)
        sae_in = self.run_time_activation_norm_fn_in(sae_in)
        return sae_in - self.b_dec * self.cfg.apply_b_dec_to_input

    def hidden_pre(self, x: torch.Tensor) -> torch.Tensor:
        return self.process_sae_in(x) @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        return self.run_time_activation_norm_fn_out(self._linear_decode(feature_acts))

    def _linear_decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        """feature_acts @ W_dec + b_dec. Rows of a sparse SAE (a TopK SAE's 64 of 4,608 features) are summed
        over their active features' decoder rows only (embedding_bag over the nonzero entries, in row order):
        the same sum without the dense product's multiplications by zero, which cost as much as the encoder."""
        if feature_acts.is_sparse:
            feature_acts = feature_acts.to_dense()
        if feature_acts.dim() != 2 or feature_acts.requires_grad or feature_acts.dtype != self.W_dec.dtype:
            return feature_acts @ self.W_dec + self.b_dec
        acts = SparseActs.from_dense(feature_acts)
        if len(acts.indices) * SPARSE_DECODE_DENSITY > feature_acts.numel():
            return feature_acts @ self.W_dec + self.b_dec
        return self._sum_rows(acts)

    def _sum_rows(self, acts: SparseActs) -> torch.Tensor:
        """values @ W_dec + b_dec, summing each row's active decoder rows (embedding_bag, in row order)."""
        values = acts.values.to(self.W_dec.dtype)
        summed = nn.functional.embedding_bag(acts.indices, self.W_dec, acts.indptr[:-1], mode="sum",
                                             per_sample_weights=values)
        return summed + self.b_dec

    def decode_sparse(self, acts: SparseActs) -> torch.Tensor:
        """`decode` of activations in CSR form (`SparseActs`)."""
        return self.run_time_activation_norm_fn_out(self._sum_rows(acts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def to(self, *args: Any, **kwargs: Any) -> NativeSAE:  # type: ignore[override]
        device_arg, dtype_arg = None, None
        for arg in args:
            if isinstance(arg, (torch.device, str)):
                device_arg = arg
            elif isinstance(arg, torch.dtype):
                dtype_arg = arg
            elif isinstance(arg, torch.Tensor):
                device_arg, dtype_arg = arg.device, arg.dtype
        device_arg = kwargs.get("device", device_arg)
        dtype_arg = kwargs.get("dtype", dtype_arg)
        if device_arg is not None:
            self.device = torch.device(device_arg) if isinstance(device_arg, str) else device_arg
            self.cfg.device = str(self.device)
        if dtype_arg is not None:
            self.cfg.dtype = _DTYPE_NAMES.get(dtype_arg, str(dtype_arg))
            self.dtype = dtype_arg
        return super().to(*args, **kwargs)


class StandardSAE(NativeSAE):
    ARCHITECTURE = "standard"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.hidden_pre(x))


class TopKSAE(NativeSAE):
    """Keeps the k largest pre-activations (ReLU'd); dense activations, as SAE-Lens's inference TopKSAE."""

    ARCHITECTURE = "topk"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        hidden_pre = self.hidden_pre(x)
        if self.cfg.rescale_acts_by_decoder_norm:
            hidden_pre = hidden_pre * self.W_dec.norm(dim=-1)
        values, indices = torch.topk(hidden_pre, k=self.cfg.k, dim=-1, sorted=False)
        result = torch.zeros_like(hidden_pre)
        result.scatter_(-1, indices, values.relu())
        return result

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        if feature_acts.is_sparse:
            feature_acts = feature_acts.to_dense()
        if self.cfg.rescale_acts_by_decoder_norm:
            feature_acts = feature_acts * (1 / self.W_dec.norm(dim=-1))
        return self.run_time_activation_norm_fn_out(self._linear_decode(feature_acts))

    def encode_sparse(self, x: torch.Tensor) -> SparseActs:
        """`encode` ([n, d_in]) as SparseActs: the k largest pre-activations' ReLU, those above 0, ascending.
        The pre-activations come ENCODE_CHUNK rows at a time from one product with the folded encoder
        (`_folded_encoder`), each chunk's top k taken while it is in cache: on the default SAE and 8,000
        tokens, 0.64 s against 0.84 s for `hidden_pre`, the rescaling and one top k over the whole matrix."""
        weight, bias = self._folded_encoder()
        x = self.run_time_activation_norm_fn_in(x.to(self.dtype))
        values = torch.empty((len(x), self.cfg.k), dtype=weight.dtype, device=x.device)
        indices = torch.empty((len(x), self.cfg.k), dtype=torch.long, device=x.device)
        for at in range(0, len(x), ENCODE_CHUNK):
            rows = slice(at, at + ENCODE_CHUNK)
            torch.topk(torch.addmm(bias, x[rows], weight), k=self.cfg.k, dim=-1, sorted=False,
                       out=(values[rows], indices[rows]))
        indices, order = indices.sort(dim=-1)
        values = values.gather(-1, order).relu()
        keep = values > 0
        indptr = torch.zeros(len(values) + 1, dtype=torch.long, device=values.device)
        indptr[1:] = keep.sum(-1).cumsum(0)
        return SparseActs(indptr, indices[keep], values[keep])

    def _folded_encoder(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W_enc and b_enc with the input's b_dec and the decoder norms folded in, so that
        `hidden_pre(x)` (times the norms where the config rescales) == `norm_in(x) @ W + b` up to rounding.
        Kept while the parameters are the same tensors at the same versions (training changes them in place)."""
        params = (self.W_enc, self.b_enc, self.W_dec, self.b_dec)
        key = (tuple((p.data_ptr(), p._version) for p in params), self.cfg.apply_b_dec_to_input,
               self.cfg.rescale_acts_by_decoder_norm)
        cached = self.__dict__.get("_folded")
        if cached is not None and cached[0] == key:
            return cached[1]
        with torch.no_grad():
            weight, bias = self.W_enc.detach(), self.b_enc.detach()
            if self.cfg.apply_b_dec_to_input:
                bias = bias - self.b_dec.detach() @ weight
            if self.cfg.rescale_acts_by_decoder_norm:
                scale = self.W_dec.detach().norm(dim=-1)
                weight, bias = weight * scale, bias * scale
        folded = (weight.contiguous(), bias.contiguous())
        self.__dict__["_folded"] = (key, folded)
        return folded

    def decode_sparse(self, acts: SparseActs) -> torch.Tensor:
        if self.cfg.rescale_acts_by_decoder_norm:
            acts = SparseActs(acts.indptr, acts.indices, acts.values / self.W_dec.norm(dim=-1)[acts.indices])
        return super().decode_sparse(acts)


class JumpReLUSAE(NativeSAE):
    """ReLU, then zero where the pre-activation is at or below the feature's threshold."""

    ARCHITECTURE = "jumprelu"
    PARAMETERS = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")
    threshold: nn.Parameter  # [d_sae]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        hidden_pre = self.hidden_pre(x)
        base = torch.relu(hidden_pre)
        return base * (hidden_pre > self.threshold).to(base.dtype)


SAE_CLASSES: dict[str, type[NativeSAE]] = {cls.ARCHITECTURE: cls for cls in (StandardSAE, TopKSAE, JumpReLUSAE)}


def _is_v6(cfg: dict[str, Any]) -> bool:
    """Whether SAE-Lens would read the config as is (no pre-6.0 renaming and defaulting)."""
    from packaging.version import Version

    version = cfg.get("sae_lens_version")
    if not version and isinstance(cfg.get("metadata"), dict):
        version = cfg["metadata"].get("sae_lens_version")
    return bool(version) and Version(version) >= Version("6.0.0-rc.0")


def _native_config(raw: dict[str, Any], device: str) -> NativeSAEConfig | None:
    arch = raw.get("architecture")
    if arch not in SAE_CLASSES or not _is_v6(raw):
        return None
    if raw.get("reshape_activations", "none") != "none":
        return None
    if raw.get("normalize_activations", "none") not in _NORMALIZATIONS:
        return None
    if raw.get("dtype", "float32") not in _DTYPES:
        return None
    meta = raw.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta.setdefault("sae_lens_version", None)  # SAE-Lens fills these two with its own version
    meta.setdefault("sae_lens_training_version", None)
    cfg = NativeSAEConfig(
        d_in=raw["d_in"], d_sae=raw["d_sae"], dtype=raw.get("dtype", "float32"), device=device,
        apply_b_dec_to_input=raw.get("apply_b_dec_to_input", True),
        normalize_activations=raw.get("normalize_activations", "none"),
        reshape_activations="none", metadata=SAEMetadata(**meta), arch=arch,
    )
    if arch == "topk":
        cfg.k = raw.get("k", 100)
        cfg.rescale_acts_by_decoder_norm = raw.get("rescale_acts_by_decoder_norm", False)
    return cfg


def load_native_sae(folder: str | Path, device: str = "cpu") -> NativeSAE | None:
    """The SAE saved in `folder`, or None where SAE-Lens must load it (anything not covered exactly here)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        raw = json.loads((folder / CFG_FILENAME).read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            return None
        cfg = _native_config(raw, device)
        if cfg is None:
            return None
        cls = SAE_CLASSES[cfg.arch]
        dtype = _DTYPES[cfg.dtype]
        state = {k: v.to(dtype=dtype) for k, v in load_file(str(folder / WEIGHTS_FILENAME), device=device).items()}
        scale = state.pop("scaling_factor", None)
        if scale is not None and not torch.allclose(scale, torch.ones_like(scale)):
            return None
        shapes = {"W_enc": (cfg.d_in, cfg.d_sae), "b_enc": (cfg.d_sae,), "W_dec": (cfg.d_sae, cfg.d_in),
                  "b_dec": (cfg.d_in,), "threshold": (cfg.d_sae,)}
        if set(state) != set(cls.PARAMETERS) or any(tuple(state[k].shape) != shapes[k] for k in state):
            return None
    except Exception:  # noqa: BLE001 - SAE-Lens loads it, or says what is wrong
        return None
    sae = cls(cfg, state)
    return sae.to(dtype=dtype, device=device)
