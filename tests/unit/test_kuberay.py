"""The KubeRay RayJob manifest (jobs/kuberay-rayjob.yaml): valid, runs our job on S3, keeps token auth on."""

import shlex

import yaml
from click.testing import CliRunner

from tests.conftest import REPO


def test_rayjob_manifest_runs_the_job_on_s3_with_token_auth(monkeypatch):
    doc = yaml.safe_load((REPO / "jobs" / "kuberay-rayjob.yaml").read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[:2] == ["python", "/opt/faceproc/jobs/annotate.py"]
    args = argv[2:]
    assert args[args.index("--input") + 1].startswith("s3://") and args[args.index("--output") + 1].startswith("s3://")
    # the entrypoint's options are the CLI's: parse them (the run itself is replaced by a stub)
    import faceproc.engine
    from faceproc.cli import main

    seen = {}

    def fake_run(inputs, out, cfg, **kw):
        seen.update(inputs=inputs, out=out, variant=cfg.model.variant, engine=kw.get("engine"))
        raise faceproc.engine.OutputLocked("stub")

    monkeypatch.setattr(faceproc.engine, "annotate", fake_run)
    r = CliRunner().invoke(main, ["annotate", "--engine", "ray", "--json", *args])
    assert r.exit_code == 1 and "stub" in r.output, r.output
    assert seen == {"inputs": ["s3://my-photos/archive"], "out": "s3://my-photos/faceproc/run1", "variant": "unfrozen",
                    "engine": "ray"}
    spec = doc["spec"]["rayClusterSpec"]
    containers = [spec["headGroupSpec"]["template"]["spec"]["containers"][0]]
    containers += [g["template"]["spec"]["containers"][0] for g in spec["workerGroupSpecs"]]
    containers += doc["spec"]["submitterPodTemplate"]["spec"]["containers"]
    for c in containers:
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        assert env.get("RAY_AUTH_MODE") == "token", c["name"]
        assert {"secretRef": {"name": "faceproc-ray-token"}} in c.get("envFrom", []), c["name"]
