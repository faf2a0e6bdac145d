"""The plugin author's interface: what a plugin may declare beyond a bare ``nn.Module`` subclass
or function (``Function``, ``Param``, cost models). See ``docs/plugins.md``; defined in
``app.compute.catalogue.declarations``."""

from app.compute.catalogue.declarations import ELEMENTWISE, Cost, CostModel, Function, Param, elementwise

__all__ = ["ELEMENTWISE", "Cost", "CostModel", "Function", "Param", "elementwise"]
