"""The check of a feature number, one rule for every face (labels, concepts, steering, the CLI)."""

from __future__ import annotations

from morph.errors import InputError


def check_feature(feature: object, d_sae: int) -> int:
    """`feature` (an int, or a string or number that int() takes) as an int in [0, d_sae); InputError (one
    line) for anything else, a bool included (True is not feature 1)."""
    if isinstance(feature, bool):
        raise InputError(f"feature {feature!r} is not a feature number")
    if not isinstance(feature, int):
        try:
            feature = int(feature)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise InputError(f"feature {feature!r} is not a feature number") from None
    if not 0 <= feature < d_sae:
        raise InputError(f"feature {feature} does not exist: this SAE has features 0 to {d_sae - 1}")
    return feature
