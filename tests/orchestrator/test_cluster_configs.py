"""The cluster configs: Ray's launcher schema, the KubeRay RayJob, and the paths they name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from multi_agent_pruning.config import load_config

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER_FILES = ["ray_cluster.yaml", "deploy/onprem_cluster.yaml"]
RAYJOB = ROOT / "deploy" / "kuberay" / "rayjob.yaml"
# Every file that tells a reader which config to run.
REFERENCING_FILES = [*LAUNCHER_FILES, "deploy/kuberay/rayjob.yaml", "docs/cluster.md"]
CONFIG_PATH = re.compile(r"configs/[\w./-]+\.ya?ml")


def _load(relative: str) -> dict:
    return yaml.safe_load((ROOT / relative).read_text())


def _ray_schema() -> dict:
    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _fits(cpus: float, gpus: float, config: str, monkeypatch: pytest.MonkeyPatch) -> tuple[float, float]:
    """The per-trial (CPU, GPU) request of ``config``, checked against a node's ``cpus``/``gpus``."""
    monkeypatch.setenv("IMAGENET_PATH", "/mnt/imagenet")
    hw = load_config(ROOT / config).hardware
    assert hw.cpus_per_trial <= cpus and hw.gpus_per_trial <= gpus, (config, cpus, gpus)
    return hw.cpus_per_trial, hw.gpus_per_trial


@pytest.mark.parametrize("relative", LAUNCHER_FILES)
def test_launcher_config_passes_ray_schema_and_ray_up_validation(relative):
    config = _load(relative)
    jsonschema.validate(config, _ray_schema())
    # The offline half of `ray up`: defaults merged, node types filled in, then validated.
    prepared = prepare_config(config)
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("relative", LAUNCHER_FILES)
def test_launcher_config_secures_ray_and_installs_the_project(relative):
    config = _load(relative)
    head, = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    worker, = [c for c in config["worker_start_ray_commands"] if "ray start" in c]
    assert "--dashboard-host=127.0.0.1" in head
    assert "RAY_AUTH_MODE=token" in head and "RAY_AUTH_MODE=token" in worker
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    remote, = [r for r, local in config["file_mounts"].items() if local == "."]
    setup = "\n".join(config["setup_commands"])
    assert f"-e {remote}" in setup
    assert re.search(r"pip install .*torch==[\d.]+ torchvision==[\d.]+", setup)
    assert config["rsync_filter"] == [".gitignore"]


def test_aws_gpu_workers_fit_one_deit_small_trial(monkeypatch):
    config = _load("ray_cluster.yaml")
    assert (config["provider"]["type"], config["provider"]["region"]) == ("aws", "us-west-2")
    gpu_types = {name: t for name, t in config["available_node_types"].items() if t["resources"].get("GPU")}
    assert list(gpu_types) == ["ray.worker.gpu"]
    workers = gpu_types["ray.worker.gpu"]
    assert workers["node_config"]["InstanceType"] == "g5.2xlarge"
    # min_workers 0: the search's pending trials make the autoscaler add workers (docs/cluster.md).
    assert 0 == workers["min_workers"] < workers["max_workers"] <= config["max_workers"]
    resources = workers["resources"]
    assert _fits(resources["CPU"], resources["GPU"], "configs/deit_small_imagenet.yaml", monkeypatch) == (8, 1)


def test_onprem_config_lists_its_hosts():
    provider = _load("deploy/onprem_cluster.yaml")["provider"]
    assert provider["type"] == "local"
    assert provider["head_ip"] and len(provider["worker_ips"]) == 2
    assert provider["head_ip"] not in provider["worker_ips"]


def _rayjob() -> dict:
    return yaml.safe_load(RAYJOB.read_text())


def test_rayjob_runs_the_deit_small_search():
    job = _rayjob()
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["entrypoint"].split() == ["mapruner", "prune", "--config", "configs/deit_small_imagenet.yaml",
                                          "--output-dir", "/mnt/results/deit_small_imagenet"]
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"] == "/home/ray/multi_agent_pruning"
    assert spec["rayClusterSpec"]["authOptions"] == {"mode": "token"}
    assert spec["shutdownAfterJobFinishes"] is True


def _pods(job: dict) -> dict[str, dict]:
    cluster = job["spec"]["rayClusterSpec"]
    pods = {"head": cluster["headGroupSpec"]["template"]["spec"]}
    pods.update({group["groupName"]: group["template"]["spec"] for group in cluster["workerGroupSpecs"]})
    return pods


def test_rayjob_gpu_workers_fit_one_trial_and_every_pod_sees_imagenet(monkeypatch):
    job = _rayjob()
    pods = _pods(job)
    assert list(pods) == ["head", "gpu"]
    for name, pod in pods.items():
        container, = pod["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert env["IMAGENET_PATH"] == mounts["imagenet"] == "/mnt/imagenet", name
        assert mounts["results"] == "/mnt/results", name
        assert set(mounts) <= {v["name"] for v in pod["volumes"]}, name
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
                  if "persistentVolumeClaim" in v}
        assert claims == {"imagenet": "imagenet", "results": "mapruner-results"}, name
    limits = pods["gpu"]["containers"][0]["resources"]["limits"]
    assert limits == pods["gpu"]["containers"][0]["resources"]["requests"]
    assert "nvidia.com/gpu" not in pods["head"]["containers"][0]["resources"]["limits"]
    assert _fits(float(limits["cpu"]), float(limits["nvidia.com/gpu"]),
                 "configs/deit_small_imagenet.yaml", monkeypatch) == (8, 1)
    group, = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    # Autoscaled from no GPU pod: the search's pending trials add them (docs/cluster.md).
    assert job["spec"]["rayClusterSpec"]["enableInTreeAutoscaling"] is True and group["minReplicas"] == 0


@pytest.mark.parametrize("relative", REFERENCING_FILES)
def test_every_config_path_named_exists(relative):
    named = set(CONFIG_PATH.findall((ROOT / relative).read_text()))
    assert named, f"{relative} names no config"
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert not missing, f"{relative} names configs that do not exist: {missing}"
