"""Custom resources checked against their CustomResourceDefinitions as the API server checks them,
with kubectl's strict field validation (``kubectl apply --validate=strict``): a field the schema
does not list is an error, not silently dropped.

A CRD's ``openAPIV3Schema`` is structural: an object allows only the ``properties`` it lists (and
``additionalProperties`` when it gives one), unless ``x-kubernetes-preserve-unknown-fields: true``
says otherwise. ``strict_schema`` turns it into a JSON Schema that says so
(``additionalProperties: false`` on every such object) and checks the rest as the API server
does: ``x-kubernetes-int-or-string``, ``nullable``, the ``int32`` and ``int64`` ranges, unique keys
of ``x-kubernetes-list-type: map`` lists and unique items of ``set`` lists, ``metadata`` as
Kubernetes' own ObjectMeta (from ``kubernetes_validate``'s strict schemas), and ``apiVersion`` and
``kind`` as the CRD names them. A keyword it does not know is an error in the schema, so nothing is
passed over in silence. CEL rules (``x-kubernetes-validations``) are not evaluated here: each
validation returns the rules it met, for the caller to check that it knows them.

The CRDs come from the pinned KServe and KEDA releases (``tests/data/crds/README.md``)."""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

from tests.support.paths import ROOT

CRDS = ROOT / "tests" / "data" / "crds"
KUBERNETES_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = {"$ref": f"{KUBERNETES_DEFINITIONS}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
INTEGER_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

# What a structural schema may say, and what each keyword does here.
_SUBSCHEMA_MAPS = {"properties"}
_SUBSCHEMAS = {"items", "not"}
_SUBSCHEMA_LISTS = {"anyOf", "allOf", "oneOf"}
_AS_JSON_SCHEMA = {
    "type",
    "required",
    "enum",
    "pattern",
    "maxLength",
    "minLength",
    "maxItems",
    "minItems",
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "multipleOf",
    "uniqueItems",
    "maxProperties",
    "minProperties",
}
_NOT_VALIDATION = {"description", "title", "default", "example", "externalDocs", "x-kubernetes-map-type"}
_HANDLED = {
    "additionalProperties",
    "format",
    "nullable",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-validations",
}


class SchemaError(Exception):
    """The CRD's schema says something this validator does not understand."""


@dataclass(frozen=True)
class CelRule:
    path: str
    """Where in the schema the rule stands (property names, ``*`` for a list's items)."""
    rule: str
    message: str
    subject: Any
    """The part of the resource it applies to (``self`` in the rule)."""


def strict_schema(schema: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """``schema`` (a structural openAPIV3Schema node) as a JSON Schema that refuses unknown fields."""
    unknown = set(schema) - _SUBSCHEMA_MAPS - _SUBSCHEMAS - _SUBSCHEMA_LISTS - _AS_JSON_SCHEMA - _NOT_VALIDATION
    if unknown - _HANDLED:
        raise SchemaError(f"{path or '/'}: keywords this validator does not know: {sorted(unknown - _HANDLED)}")
    out: dict[str, Any] = {key: schema[key] for key in _AS_JSON_SCHEMA if key in schema}
    for key in _SUBSCHEMA_MAPS & set(schema):
        out[key] = {name: strict_schema(sub, f"{path}/{name}") for name, sub in schema[key].items()}
    for key in _SUBSCHEMAS & set(schema):
        out[key] = strict_schema(schema[key], f"{path}/{'*' if key == 'items' else key}")
    for key in _SUBSCHEMA_LISTS & set(schema):
        out[key] = [strict_schema(sub, path) for sub in schema[key]]
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("format") in INTEGER_RANGES and schema.get("type") == "integer":
        low, high = INTEGER_RANGES[schema["format"]]
        out.setdefault("minimum", low)
        out.setdefault("maximum", high)
    if schema.get("x-kubernetes-embedded-resource"):
        embedded = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": OBJECT_META}
        out["properties"] = {**embedded, **out.get("properties", {})}
    if "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        out["additionalProperties"] = extra if isinstance(extra, bool) else strict_schema(extra, f"{path}/*")
    elif schema.get("type") == "object" and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False  # what kubectl's strict field validation refuses
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        out["uniqueItems"] = True
    elif list_type == "map":
        out["x-kubernetes-list-map-keys"] = schema["x-kubernetes-list-map-keys"]
    elif list_type not in (None, "atomic"):
        raise SchemaError(f"{path}: x-kubernetes-list-type {list_type!r}")
    if "x-kubernetes-validations" in schema:
        out["x-kubernetes-validations"] = [
            {"rule": rule["rule"], "message": rule.get("message", ""), "path": path or "/"}
            for rule in schema["x-kubernetes-validations"]
        ]
    if schema.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _unique_map_keys(
    validator: jsonschema.protocols.Validator, keys: list[str], instance: Any, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """``x-kubernetes-list-type: map``: no two items share their key fields (the API server's
    "Duplicate value")."""
    if not isinstance(instance, list):
        return
    seen: set[str] = set()
    for item in instance:
        if isinstance(item, dict):
            key = json.dumps({name: item.get(name) for name in keys}, sort_keys=True)
            if key in seen:
                yield jsonschema.ValidationError(f"duplicate entries for {key}")
            seen.add(key)


_met: ContextVar[list[CelRule]] = ContextVar("met CEL rules")


def _met_rules(
    validator: jsonschema.protocols.Validator, rules: list[dict[str, str]], instance: Any, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """CEL rules: recorded where the resource reaches them, not evaluated."""
    _met.get().extend(CelRule(rule["path"], rule["rule"], rule["message"], instance) for rule in rules)
    return iter(())


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    {"x-kubernetes-list-map-keys": _unique_map_keys, "x-kubernetes-validations": _met_rules},
)


@cache
def _kubernetes_definitions(version: str) -> Registry[Any]:
    folder = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{version}-local-strict"
    definitions = json.loads((folder / "_definitions.json").read_text())
    return Resource.from_contents(definitions) @ Registry()


@dataclass(frozen=True)
class CustomResourceDefinition:
    group: str
    kind: str
    schemas: dict[str, dict[str, Any]]
    """The served versions' openAPIV3Schemas, by version."""

    @property
    def api_versions(self) -> set[str]:
        return {f"{self.group}/{version}" for version in self.schemas}

    def strict_schema(self, version: str) -> dict[str, Any]:
        schema = strict_schema(self.schemas[version])
        schema["properties"] = {
            **schema.get("properties", {}),
            "apiVersion": {"const": f"{self.group}/{version}"},
            "kind": {"const": self.kind},
            "metadata": OBJECT_META,  # the API server checks metadata as ObjectMeta, whatever the CRD says
        }
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
        return schema


@cache
def load_crd(path: Path) -> CustomResourceDefinition:
    crd = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
    assert crd["kind"] == "CustomResourceDefinition", path
    spec = crd["spec"]
    schemas = {v["name"]: v["schema"]["openAPIV3Schema"] for v in spec["versions"] if v.get("served", True)}
    return CustomResourceDefinition(spec["group"], spec["names"]["kind"], schemas)


def pinned_crds() -> dict[tuple[str, str], CustomResourceDefinition]:
    """Every CRD of the test data, by (group, kind)."""
    crds = [load_crd(path) for path in sorted(CRDS.glob("*.yaml"))]
    return {(crd.group, crd.kind): crd for crd in crds}


class CustomResourceValidator:
    def __init__(self, kubernetes_version: str) -> None:
        self.kubernetes_version = kubernetes_version
        self.crds = pinned_crds()
        self._validators: dict[tuple[str, str], Any] = {}

    def knows(self, resource: Mapping[str, Any]) -> bool:
        group = str(resource.get("apiVersion", "")).rpartition("/")[0]
        return (group, resource.get("kind")) in self.crds

    def _validator(self, group: str, version: str, kind: str) -> Any:
        key = (f"{group}/{version}", kind)
        if key not in self._validators:
            crd = self.crds.get((group, kind))
            if crd is None or version not in crd.schemas:
                raise SchemaError(f"no pinned CRD serves {group}/{version} {kind}")
            registry = _kubernetes_definitions(self.kubernetes_version)
            self._validators[key] = _Validator(crd.strict_schema(version), registry=registry)
        return self._validators[key]

    def errors(self, resource: Mapping[str, Any]) -> tuple[list[str], list[CelRule]]:
        """What the API server would refuse in ``resource`` (empty when nothing), and the CEL
        rules its fields met (not evaluated)."""
        group, _, version = str(resource["apiVersion"]).rpartition("/")
        validator = self._validator(group, version, str(resource["kind"]))
        rules: list[CelRule] = []
        token = _met.set(rules)
        try:
            found = sorted(validator.iter_errors(resource), key=lambda error: [str(p) for p in error.absolute_path])
        finally:
            _met.reset(token)
        return [f"/{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in found], rules
