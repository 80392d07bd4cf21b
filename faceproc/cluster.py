"""Ray for a run: attach to the cluster the user named, or start an embedded one that is private and quiet.

A named cluster (RAY_ADDRESS or run.ray_address) is checked before ray.init is called, because ray.init
never gives up on an address that is not a Ray cluster: it rewrites 127.0.0.1 to the node's own IP, then
retries for minutes (a port that answers something else) or prints ~85 lines of retries (a host that does
not answer). Here the address gets a TCP connect and one Ray RPC with a deadline, the same rewrite
included, and a wrong address is one line (`ClusterUnreachable`, exit 1) within seconds.

The embedded cluster (no address given) keeps token authentication on and sends no usage statistics
(RAY_USAGE_STATS_ENABLED=0 for its processes): faceproc itself makes no network call but the first
model download (faceproc/offline.py, docs/privacy.md).
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("faceproc")

PROBE_TIMEOUT = 5.0  # seconds for the TCP connect and for the Ray RPC, each


class ClusterUnreachable(RuntimeError):
    """The named Ray cluster does not answer, or what answers is not Ray."""


def init_ray(cfg):
    """`ray`, initialised for this run: the named cluster (checked first) or a fresh embedded one."""
    import ray

    if not ray.is_initialized():
        address = cfg.run.ray_address or os.environ.get("RAY_ADDRESS")
        if address:
            check_cluster(address)
            ray.init(address=address, log_to_driver=True)
            log.info("attached to the Ray cluster at %s", address)
        else:
            # address="local": always a fresh embedded cluster. A bare ray.init() would join the last cluster
            # started on this machine (Ray's ray_current_cluster file), and hang forever when that one is dead.
            log.info("starting an embedded Ray cluster for this run "
                     "(set RAY_ADDRESS or run.ray_address to use another)")
            EMBEDDED["set_auth"] = _keep_token_auth()
            EMBEDDED["set_usage"] = _no_usage_stats()
            with _no_dashboard_process():
                ray.init(address="local", include_dashboard=False, log_to_driver=True, configure_logging=False)
            EMBEDDED["started"] = True
    return ray


# ------------------------------------------------------------------------------ a named cluster

def check_cluster(address: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Raise ClusterUnreachable (one line) unless a Ray cluster answers at `address` within a few seconds."""
    import socket
    from urllib.parse import urlparse

    where = f"the Ray cluster at {address}"
    how = "check RAY_ADDRESS / run.ray_address (a cluster's GCS address, HEAD:6379, or ray://HEAD:10001)"
    if address == "local":
        return
    scheme = address.split("://", 1)[0].lower() if "://" in address else ""
    if scheme in ("http", "https"):
        raise ClusterUnreachable(f"{address} is a dashboard (job submission) address, not one a driver attaches to: "
                                 f"submit with `ray job submit --address {address} -- python jobs/annotate.py ...`, "
                                 f"or {how}")
    if scheme not in ("", "ray"):
        raise ClusterUnreachable(f"{address}: unknown scheme {scheme}://; {how}")
    target = address
    if not scheme:
        try:  # what ray.init will connect to: "auto" looked up, 127.0.0.1 rewritten to the node's IP
            from ray._private.services import canonicalize_bootstrap_address

            target = canonicalize_bootstrap_address(address) or address
        except Exception as e:  # noqa: BLE001 (a malformed address, no cluster found for "auto")
            raise ClusterUnreachable(f"{where}: {str(e).splitlines()[0].rstrip('.')}; {how}") from None
        if target != address:
            where += f" (Ray connects to {target})"
    u = urlparse(target if "://" in target else f"tcp://{target}")
    try:
        host, port = u.hostname, u.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise ClusterUnreachable(f"{address} is not host:port; {how}")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise ClusterUnreachable(f"{where} does not answer ({e or type(e).__name__}); {how}") from None
    problem = _ray_rpc_problem(host, port, client=scheme == "ray", timeout=timeout)
    if problem:
        raise ClusterUnreachable(f"{where} is not a Ray cluster: something answers there, but not Ray ({problem}); "
                                 f"{how}")


def _ray_rpc_problem(host: str, port: int, client: bool, timeout: float) -> str | None:
    """None when a Ray GCS (or, for ray://, a gRPC server) answers at host:port, else what went wrong."""
    import grpc

    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    with grpc.insecure_channel(target) as channel:
        if client:  # ray:// (Ray Client): its server speaks gRPC; ray.init checks the rest with its own timeout
            try:
                grpc.channel_ready_future(channel).result(timeout=timeout)
                return None
            except grpc.FutureTimeoutError:
                return f"no gRPC server answered within {timeout:.0f} s"
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

        try:
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=timeout)
            return None
        except grpc.RpcError as e:
            code = e.code()
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                return None  # a Ray cluster that wants a token: ray.init says so itself
            detail = (e.details() or "").splitlines()[0] if e.details() else ""
            detail = detail.rsplit("last error: ", 1)[-1][:160]  # gRPC's "failed to connect ...; last error: X"
            return f"{code.name}{': ' + detail if detail else ''}"


# ------------------------------------------------------------------------------ the embedded cluster

EMBEDDED: dict[str, Any] = {"started": False, "set_auth": False, "set_usage": None, "thread": None}


def release_embedded_ray() -> None:
    """The run's own cluster is shut down as soon as the work is done, in the background: Ray's shutdown
    (~1.4 s here) then overlaps the report instead of adding to every run's wall time at exit."""
    if not EMBEDDED["started"] or EMBEDDED["thread"] is not None:
        return
    import threading

    import ray

    EMBEDDED["thread"] = threading.Thread(target=ray.shutdown, name="faceproc-ray-shutdown", daemon=True)
    EMBEDDED["thread"].start()


def wait_embedded_ray() -> None:
    """End of a run: the embedded cluster is gone, and the Ray variables are as the caller had them."""
    if not EMBEDDED["started"]:
        return
    release_embedded_ray()
    EMBEDDED["thread"].join()
    if EMBEDDED["set_auth"]:
        os.environ.pop("RAY_AUTH_MODE", None)
        _refresh_ray_auth_mode()
    if EMBEDDED["set_usage"]:
        (was,) = EMBEDDED["set_usage"]
        if was is None:
            os.environ.pop("RAY_USAGE_STATS_ENABLED", None)
        else:
            os.environ["RAY_USAGE_STATS_ENABLED"] = was
    EMBEDDED.update(started=False, set_auth=False, set_usage=None, thread=None)


def _no_usage_stats() -> tuple[str | None]:
    """The embedded cluster reports nothing to Ray's usage-stats server: its processes inherit
    RAY_USAGE_STATS_ENABLED=0 (Ray 2.60's ray.init sets it too, for clusters it starts, and leaves it set in
    the driver). Returns the caller's value, which the end of the run puts back."""
    was = os.environ.get("RAY_USAGE_STATS_ENABLED")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    return (was,)


class _no_dashboard_process:
    """ray.init without the dashboard still starts the dashboard process, for one module: usage stats. At
    start that module asks which cloud it runs on (HTTP to 169.254.169.254, a DNS lookup of
    metadata.google.internal), with usage stats disabled too (Ray 2.60, dashboard/modules/usage_stats).
    The embedded cluster needs nothing from that process, so it is not started: Ray's start_api_server is
    stood in for while ray.init runs (Ray then records no dashboard, as when its dependencies are missing).
    A Ray without that function starts the process as usual."""

    def __enter__(self):
        try:
            import ray._private.services as services
        except ImportError:
            self.services = None
            return self
        self.services, self.real = services, getattr(services, "start_api_server", None)
        if self.real is not None:
            def start_api_server(include_dashboard, *args, **kwargs):
                if include_dashboard is False:
                    return None, None  # (dashboard URL, process info): none started
                return self.real(include_dashboard, *args, **kwargs)

            services.start_api_server = start_api_server
        return self

    def __exit__(self, *exc):
        if self.services is not None and self.real is not None:
            self.services.start_api_server = self.real
        return False


def _refresh_ray_auth_mode() -> None:
    try:  # Ray reads the mode once per process: refresh it, as its own _enable_token_auth does
        from ray._raylet import Config as RayConfig

        RayConfig.initialize("")
    except Exception:  # a Ray without this hook reads the variable at start-up anyway
        pass


def _keep_token_auth() -> bool:
    """The embedded cluster listens on every interface: token authentication stays on, quietly.

    Ray enables it for a new local cluster only when RAY_AUTH_MODE is unset, and then prints a message whose
    usual answer (RAY_AUTH_MODE=disabled) would open the ports to anyone on the network. Setting the mode
    explicitly keeps it on without the message; Ray creates ~/.ray/auth_token if no token is set.
    Returns whether it set the variable (the end of the run takes it away again).
    """
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is None:
        os.environ["RAY_AUTH_MODE"] = "token"
        _refresh_ray_auth_mode()
        return True
    if mode.lower() != "token":
        log.warning("RAY_AUTH_MODE=%s: the embedded Ray cluster runs WITHOUT token authentication, and anyone who "
                    "can reach this machine's network ports can run code on it while the run lasts", mode)
    return False


def stop_actors(actors: list, refs, here: list[int] | None = None, timeout: float = 5.0) -> None:
    """A stopped run: kill its actors (no restart) and wait, briefly, until their tasks in flight have ended,
    i.e. the actors are gone and none of them can still commit a shard after the driver's clean-up. Ray may
    report a killed actor's task as failed before its process has exited; `here` (pids of the actors on this
    node) is waited on until the processes are really gone."""
    import time

    import ray

    if not actors or not ray.is_initialized():
        return
    t0 = time.monotonic()
    for a in actors:
        try:
            ray.kill(a, no_restart=True)
        except Exception:  # noqa: BLE001 (already dead, or Ray going down)
            pass
    pending = list(refs)
    if pending:
        try:
            ray.wait(pending, num_returns=len(pending), timeout=timeout)
        except Exception:  # noqa: BLE001
            pass
    if here:
        import psutil

        procs = []
        for pid in here:
            try:
                procs.append(psutil.Process(pid))
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=max(0.1, timeout - (time.monotonic() - t0)))
    log.info("stopped: %d workers killed, %d shards in flight", len(actors), len(pending))
