"""deploy/ is checked offline: the launcher YAML against Ray's own schema, the KubeRay manifests
against the KubeRay CRDs, and every qdistill command in them against the CLI's own parser."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from qdistill.cluster.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CRDS = ROOT.parent / "shared" / "kuberay-crds"


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def test_cluster_launcher_yaml_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((DEPLOY / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # raises on anything Ray's schema refuses
    assert config["docker"]["image"] == "qdistill:0.1.0"


def _k8s_schema(node: object) -> object:
    """OpenAPI v3 with Kubernetes extensions → JSON Schema: int-or-string is either, preserved
    unknown fields are allowed, and elsewhere unknown keys are refused."""
    if isinstance(node, list):
        return [_k8s_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _k8s_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _crd_validator(kind: str) -> jsonschema.Draft7Validator:
    if not CRDS.is_dir():  # CI has shared/ beside the clone; a missing copy is an error, not a skip
        raise FileNotFoundError(f"the KubeRay CRDs are read from {CRDS}, which is absent: "
                                "check out shared/ beside the repository")
    crd = yaml.safe_load((CRDS / f"ray.io_{kind.lower()}s.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft7Validator(_k8s_schema(copy.deepcopy(version["schema"]["openAPIV3Schema"])))


@pytest.mark.slow
@pytest.mark.parametrize("name, kind", [("kuberay/raycluster.yaml", "RayCluster"), ("kuberay/rayjob.yaml", "RayJob")])
def test_kuberay_manifests_pass_the_crds(name, kind):
    (doc,) = _docs(name)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == kind
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in _crd_validator(kind).iter_errors(doc)]
    assert errors == []


@pytest.mark.slow
def test_the_crd_check_refuses_an_unknown_key():
    (doc,) = _docs("kuberay/raycluster.yaml")
    doc["spec"]["headGroupSpec"]["rayStartParamz"] = {}
    assert any("rayStartParamz" in e.message for e in _crd_validator("RayCluster").iter_errors(doc))


@pytest.mark.parametrize("name", ["kuberay/raycluster.yaml", "kuberay/rayjob.yaml"])
def test_head_pods_stop_their_runs_before_they_go(name):
    """A pod's SIGTERM takes Ray down at once: the head's pre-stop hook asks every run to stop
    first, within the pod's grace period; a RayJob gives its entrypoint a stop grace of its own."""
    (doc,) = _docs(name)
    spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
    pod = spec["headGroupSpec"]["template"]["spec"]
    (head,) = pod["containers"]
    hook = head["lifecycle"]["preStop"]["exec"]["command"]
    assert hook == ["/bin/sh", "-c", "qdistill stop --all --address auto --timeout 100"]
    assert pod["terminationGracePeriodSeconds"] == 120
    if doc["kind"] == "RayJob":
        assert yaml.safe_load(doc["spec"]["runtimeEnvYAML"]) == {"env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": "60"}}


def test_redis_statefulset_is_persistent_with_aof_and_a_secret_password():
    service, stateful = _docs("kuberay/redis.yaml")
    assert service["kind"] == "Service" and stateful["kind"] == "StatefulSet"
    (container,) = stateful["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes" and args[args.index("--appendfsync") + 1] == "everysec"
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    (env,) = container["env"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "qdistill-redis", "key": "password"}
    (claim,) = stateful["spec"]["volumeClaimTemplates"]
    assert container["volumeMounts"] == [{"name": claim["metadata"]["name"], "mountPath": "/data"}]
    assert service["spec"]["selector"] == stateful["spec"]["template"]["metadata"]["labels"]


def _qdistill_commands() -> list[tuple[str, str]]:
    """Every `qdistill …` command written in deploy/: in YAML values, comments and the Dockerfile."""
    found = []
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file():
            for line in path.read_text().splitlines():
                for match in re.finditer(r"(?:^|[\s\"'\[])(qdistill (?:run|train-teacher|eval|stop)\b[^\"'#\]]*)", line):
                    found.append((str(path.relative_to(ROOT)), match.group(1).strip()))
    return found


def test_manifests_hold_qdistill_commands():
    files = {f for f, _ in _qdistill_commands()}
    assert {"deploy/kuberay/rayjob.yaml", "deploy/kuberay/raycluster.yaml", "deploy/cluster.yaml"} <= files


@pytest.mark.parametrize("where, command", _qdistill_commands())
def test_every_manifest_command_parses(where, command):
    parser = build_parser()
    args = parser.parse_args(shlex.split(command)[1:])  # argparse exits on anything it does not know
    if args.command == "run" and args.students:
        from qdistill.learners.configs import DistillConfig, parse_students

        DistillConfig(students=parse_students(args.students))
    if getattr(args, "buffer", None):
        assert args.buffer.startswith("redis://qdistill-redis:6379/") or args.buffer == "ray"
