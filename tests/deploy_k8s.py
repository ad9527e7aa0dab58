"""Reading the Kubernetes manifests as built by kustomize: for tests/test_deploy_k8s.py."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from servicekit.settings import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
TOOLS_BIN = ROOT / ".tools" / "bin"
# Kubernetes versions the manifests are validated against: the oldest and the newest the
# deployment supports (docs/deploy.md).
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
# Where tools/k8s_schemas.py writes the schemas, in kubeconform's template language.
KUBERNETES_SCHEMA = "kubernetes-{version}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
CRD_SCHEMA = "crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"

# The services: Deployment name -> Python package. The gRPC services have a database each and
# TLS identities; the stream gateway serves HTTP and has neither.
GRPC_SERVICES = {
    "partner-registry": "partner_registry",
    "locker-hubs": "locker_hubs",
    "fleet-telemetry": "fleet_telemetry",
    "emissions-ledger": "emissions_ledger",
}
SERVICES = {**GRPC_SERVICES, "stream-gateway": "stream_gateway"}

Document = dict[str, Any]


def tool(name: str) -> Path:
    path = TOOLS_BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make k8s-tools`")
    return path


def kustomize_build(overlay: str) -> str:
    done = subprocess.run(
        [str(tool("kustomize")), "build", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"kustomize build {overlay} failed:\n{done.stderr}")
    return done.stdout


def kubeconform(manifests: str, schemas: Path, kubernetes_version: str) -> tuple[int, str]:
    """Validates in strict mode (no field the schema does not declare) with offline schemas."""
    done = subprocess.run(
        [
            str(tool("kubeconform")),
            "-strict",
            "-summary",
            "-kubernetes-version",
            kubernetes_version,
            "-schema-location",
            f"{schemas}/" + KUBERNETES_SCHEMA.replace("{version}", kubernetes_version),
            "-schema-location",
            f"{schemas}/{CRD_SCHEMA}",
            "-",
        ],
        input=manifests,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@dataclass
class Manifests:
    overlay: str
    text: str
    documents: list[Document] = field(default_factory=list)

    @classmethod
    def build(cls, overlay: str) -> Manifests:
        text = kustomize_build(overlay)
        return cls(overlay, text, [doc for doc in yaml.safe_load_all(text) if doc])

    def of_kind(self, kind: str) -> list[Document]:
        return [doc for doc in self.documents if doc["kind"] == kind]

    def get(self, kind: str, name: str) -> Document:
        for doc in self.of_kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        raise KeyError(f"no {kind} {name} in the {self.overlay} overlay")

    def config_map(self, name: str) -> dict[str, str] | None:
        """A ConfigMap of the build by its name (generated names end in a hash)."""
        for doc in self.of_kind("ConfigMap"):
            if doc["metadata"]["name"] == name:
                return dict(doc.get("data", {}))
        return None


def settings_class(service: str) -> type[ServiceSettings]:
    """The settings class a service's bootstrap defines (`class XSettings(ServiceSettings)`)."""
    module = importlib.import_module(f"{SERVICES[service]}.bootstrap")
    found = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
        and value.__module__ == module.__name__
    ]
    assert len(found) == 1, f"{module.__name__} defines {len(found)} settings classes"
    return found[0]


def settings_variables(settings: type[ServiceSettings]) -> set[str]:
    return {name.upper() for name in settings.model_fields}


def required_variables(settings: type[ServiceSettings]) -> set[str]:
    return {name.upper() for name, info in settings.model_fields.items() if info.is_required()}


_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass(frozen=True)
class Value:
    """Where a container's variable comes from: a literal, or a key of a Secret or ConfigMap
    that is not in the build (made by an operator or provided by whoever deploys)."""

    literal: str | None = None
    secret: tuple[str, str] | None = None
    config_map: tuple[str, str] | None = None
    references: tuple[str, ...] = ()


def container_environment(manifests: Manifests, container: Document) -> dict[str, Value]:
    """The container's variables as Kubernetes sets them: envFrom first, then env; $(VAR) is
    expanded from variables defined before it."""
    values: dict[str, Value] = {}
    for source in container.get("envFrom", []):
        reference = source.get("configMapRef") or source.get("secretRef")
        assert reference is not None
        data = manifests.config_map(reference["name"]) if "configMapRef" in source else None
        assert data is not None, f"envFrom {reference['name']} is not a ConfigMap of the build"
        values.update({key: Value(literal=value) for key, value in data.items()})
    for variable in container.get("env", []):
        name = variable["name"]
        if "value" in variable:
            references = tuple(_REFERENCE.findall(variable["value"]))
            missing = [ref for ref in references if ref not in values]
            assert not missing, f"{name} refers to {missing}, not defined before it"
            values[name] = Value(literal=variable["value"], references=references)
            continue
        source = variable["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            values[name] = Value(secret=(ref["name"], ref["key"]))
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            data = manifests.config_map(ref["name"])
            values[name] = (
                Value(literal=data[ref["key"]])
                if data is not None
                else Value(config_map=(ref["name"], ref["key"]))
            )
        else:
            raise AssertionError(f"{name}: unexpected source {source}")
    return values


@dataclass(frozen=True)
class MountedFile:
    path: str
    kind: str  # "secret" | "configMap"
    name: str
    key: str


def mounted_files(pod: Document, container: Document) -> dict[str, MountedFile]:
    """The files a container sees from Secret and ConfigMap volumes, by absolute path."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    files: dict[str, MountedFile] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        sources = []
        if "projected" in volume:
            for source in volume["projected"]["sources"]:
                sources.extend(
                    (kind, source[kind]) for kind in ("secret", "configMap") if kind in source
                )
        for kind in ("secret", "configMap"):
            if kind in volume:
                body = dict(volume[kind])
                body.setdefault("name", body.get("secretName", ""))
                sources.append((kind, body))
        for kind, body in sources:
            assert "items" in body, f"volume {mount['name']} mounts {body['name']} without items"
            for item in body["items"]:
                path = f"{mount['mountPath'].rstrip('/')}/{item['path']}"
                files[path] = MountedFile(path, kind, body["name"], item["key"])
    return files
