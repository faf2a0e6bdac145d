"""The catalogue: one declarative table of every activation and loss function."""

from app.compute.catalogue.registry import CATALOGUE, Catalogue
from app.compute.catalogue.spec import FunctionSpec, Param, TensorArg

__all__ = ["CATALOGUE", "Catalogue", "FunctionSpec", "Param", "TensorArg"]
