"""JSON schemas for kubeconform, made offline: Kubernetes' own and the vendored operators' CRDs.

kubeconform normally downloads its schemas; this project's machines reach no such host. The
Kubernetes schemas come from the `kubernetes-validate` package on PyPI (a dev dependency), which
ships them per Kubernetes version as strict schemas sharing one `_definitions.json`; kubeconform
needs each kind standalone, so each kind's schema is written with the definitions it reaches
inlined. The CRDs in deploy/k8s/crds become schemas of their `openAPIV3Schema`, made strict
(no property the CRD does not declare, unless it preserves unknown fields).

    python -m tools.k8s_schemas --kubernetes-version 1.37.0 --out .tools/schemas

writes <out>/kubernetes-<version>/<kind><kind suffix>.json (kubeconform's
`{{ .ResourceKind }}{{ .KindSuffix }}.json`) and <out>/crds/<group>/<kind>_<version>.json
(`{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "deploy" / "k8s" / "crds"
# A kind's schema refers to the shared file; definitions refer to each other within it.
DEFINITIONS_PREFIX = "/api/_definitions.json#/$defs/"
LOCAL_PREFIX = "#/$defs/"

Schema = dict[str, Any]


def kubernetes_schema_dir(version: str) -> Traversable:
    directory = files("kubernetes_validate") / "kubernetes-json-schema" / f"v{version}-local-strict"
    if not directory.is_dir():
        raise SystemExit(f"kubernetes-validate ships no strict schemas for Kubernetes {version}")
    return directory


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        reference = node.get("$ref")
        if isinstance(reference, str):
            for prefix in (DEFINITIONS_PREFIX, LOCAL_PREFIX):
                if reference.startswith(prefix):
                    yield reference[len(prefix) :]
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def _local_references(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                LOCAL_PREFIX + value[len(DEFINITIONS_PREFIX) :]
                if key == "$ref" and isinstance(value, str) and value.startswith(DEFINITIONS_PREFIX)
                else _local_references(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_local_references(value) for value in node]
    return node


def standalone(schema: Schema, definitions: dict[str, Schema]) -> Schema:
    """The kind's schema with every definition it reaches inlined under `$defs`."""
    reached: set[str] = set()
    pending = list(_references(schema))
    while pending:
        name = pending.pop()
        if name in reached:
            continue
        reached.add(name)
        pending.extend(_references(definitions[name]))
    result = {key: value for key, value in schema.items() if key != "$id"}
    result["$defs"] = {name: definitions[name] for name in sorted(reached)}
    return dict(_local_references(result))


def write_kubernetes_schemas(version: str, out: Path) -> int:
    source = kubernetes_schema_dir(version)
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    target = out / f"kubernetes-{version}"
    target.mkdir(parents=True, exist_ok=True)
    written = 0
    for entry in source.iterdir():
        if not entry.name.endswith(".json") or entry.name.startswith(("_", "all")):
            continue
        schema = json.loads(entry.read_text())
        # Only resource kinds (what a manifest's apiVersion and kind name), not their parts.
        if "x-kubernetes-group-version-kind" not in schema:
            continue
        (target / entry.name).write_text(json.dumps(standalone(schema, definitions)))
        written += 1
    return written


def strict_openapi(node: Schema) -> Schema:
    """An OpenAPI v3 structural schema as JSON schema, refusing undeclared properties."""
    result: Schema = {}
    for key, value in node.items():
        if key == "properties":
            result[key] = {name: strict_openapi(child) for name, child in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            result[key] = strict_openapi(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            result[key] = [strict_openapi(child) for child in value]
        elif key == "nullable" or key.startswith("x-kubernetes-"):
            continue
        else:
            result[key] = value
    if node.get("x-kubernetes-int-or-string"):
        result.pop("type", None)
        result["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in result:
        result["type"] = [result["type"], "null"]
    preserves = node.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in node and "additionalProperties" not in node and not preserves:
        result["additionalProperties"] = False
    return result


def write_crd_schemas(crd_dir: Path, out: Path) -> list[str]:
    written = []
    for path in sorted(crd_dir.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "CustomResourceDefinition":
                continue
            spec = document["spec"]
            group, kind = spec["group"], spec["names"]["kind"]
            for version in spec["versions"]:
                schema = strict_openapi(version["schema"]["openAPIV3Schema"])
                schema["$schema"] = "http://json-schema.org/draft-07/schema#"
                target = out / "crds" / group / f"{kind.lower()}_{version['name']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(schema))
                written.append(f"{group}/{kind} {version['name']}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.k8s_schemas", description=__doc__)
    parser.add_argument("--kubernetes-version", action="append", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--crds", type=Path, default=CRD_DIR)
    args = parser.parse_args(argv)
    for version in args.kubernetes_version:
        count = write_kubernetes_schemas(version, args.out)
        print(f"Kubernetes {version}: {count} kinds")
    crds = write_crd_schemas(args.crds, args.out)
    print(f"CRDs: {', '.join(crds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
