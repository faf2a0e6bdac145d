"""Name lookup over the function table: canonical names, aliases, case-insensitive, suggestions."""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from app.compute.catalogue.activations import ACTIVATIONS
from app.compute.catalogue.losses import LOSSES
from app.compute.catalogue.spec import FunctionKind, FunctionSpec
from app.core.limits import MAX_NAME

_INPLACE = "in-place operation has no meaning over HTTP: the service never sees your tensor again"
_DEPRECATED = "deprecated in torch; use `reduction` instead"
REFUSED_BY_KIND: dict[FunctionKind, dict[str, str]] = {
    "activation": {"inplace": _INPLACE},
    "loss": {"size_average": _DEPRECATED, "reduce": _DEPRECATED},
}
REFUSED_EVERYWHERE: dict[str, str] = {
    **{name: reason for refused in REFUSED_BY_KIND.values() for name, reason in refused.items()},
    "_stacklevel": "internal to torch's warnings",
}

NOT_SERVED: dict[str, str] = {
    "MultiheadAttention": "an attention layer with learned projection weights, masks and dropout, not a "
    "function of one input: its functional form (F.multi_head_attention_forward) takes over 20 arguments",
    "AdaptiveLogSoftmaxWithLoss": "a module of learned head and cluster layers, without a functional form",
    "LinearCrossEntropyLoss": "a linear layer fused with cross-entropy (F.linear_cross_entropy): compute the "
    "logits (input @ weight.T + bias) and send them to cross_entropy",
    "NLLLoss2d": "deprecated in torch: nll_loss (NLLLoss) takes (N, C, H, W) inputs",
}
"""The classes of torch.nn's activation and loss sections that are not served, and why."""


class Catalogue:
    """Every function, found by canonical name or alias, ignoring case."""

    def __init__(self, specs: tuple[FunctionSpec, ...]) -> None:
        self._specs = specs
        self._by_key: dict[str, FunctionSpec] = {}
        for spec in specs:
            for key in (spec.name, *spec.aliases):
                folded = key.lower()
                if self._by_key.get(folded, spec) is not spec:
                    raise ValueError(f"duplicate function name {key!r}")
                self._by_key[folded] = spec

    def __iter__(self) -> Iterator[FunctionSpec]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def find(self, name: str) -> FunctionSpec | None:
        """The function ``name`` names; None for an unknown name (any over ``MAX_NAME`` characters)."""
        return None if len(name) > MAX_NAME else self._by_key.get(name.lower())

    def of_kind(self, kind: FunctionKind) -> tuple[FunctionSpec, ...]:
        return tuple(spec for spec in self._specs if spec.kind == kind)

    def suggest(self, name: str, kind: FunctionKind | None = None, limit: int = 3) -> list[str]:
        """The canonical names closest to ``name``; none for a name over ``MAX_NAME`` characters
        (matching is quadratic in the name's length)."""
        if len(name) > MAX_NAME:
            return []
        keys = [k for k, s in self._by_key.items() if kind is None or s.kind == kind]
        matches = difflib.get_close_matches(name.lower(), keys, n=limit * 3, cutoff=0.5)
        names: list[str] = []
        for key in matches:
            canonical = self._by_key[key].name
            if canonical not in names:
                names.append(canonical)
        return names[:limit]

    @staticmethod
    def describe(spec: FunctionSpec) -> dict[str, object]:
        return spec.describe({**REFUSED_BY_KIND[spec.kind], **spec.refused})

    @staticmethod
    def refusal(spec: FunctionSpec, param: str) -> str | None:
        """Why a torch keyword argument is refused for this function, if it is."""
        return spec.refused.get(param) or REFUSED_EVERYWHERE.get(param)


BUILT_IN: tuple[FunctionSpec, ...] = ACTIVATIONS + LOSSES
"""torch's own functions: one declarative table of every activation and loss function."""

CATALOGUE = Catalogue(BUILT_IN)
"""torch's functions alone. A service runs with the catalogue its settings give
(``plugins.build_catalogue``: these and the operator's plugins)."""
