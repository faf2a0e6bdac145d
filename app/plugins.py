"""The plugin author's interface: what a plugin may declare beyond a bare ``nn.Module`` subclass
or function (``Function``, ``Param``, cost models), and how it refuses its input. See
``docs/plugins.md``; defined in ``app.compute.catalogue.declarations`` and ``app.core.errors``.

A bare class or function needs nothing from here: its ``forward`` (or its signature) gives the
tensor arguments, its typed keyword arguments the parameters. ``Function`` adds what a signature
cannot say::

    from app.plugins import Function, Param, elementwise

    SWISH = Function(
        Swish,
        summary="x * sigmoid(beta * x)",
        params={"beta": Param("slope of the gate", gt=0.0)},
        elementwise=True,
        cost=elementwise(40.0),
    )

Name ``module:SWISH`` in ``TORCHFN_PLUGINS`` (or in the entry-point group ``torchfn.functions``).

A plugin refuses its input with ``raise InputRejected("why", argument="target")``: a 422 whose
message carries its words, the one way a plugin's text reaches a client. A plugin's output is of
its input's dtype, and no larger than its cost model's ``memory`` (``elementwise(memory_per_element=...)``
for an output wider than its input); otherwise its request fails with ``plugin_error``.
"""

from app.compute.catalogue.declarations import ELEMENTWISE, Cost, CostModel, Function, Param, elementwise
from app.core.errors import InputRejected

__all__ = ["ELEMENTWISE", "Cost", "CostModel", "Function", "InputRejected", "Param", "elementwise"]
