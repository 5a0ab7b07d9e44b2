"""The engine setting: a Ray cluster's address ($FLOWER_LENS_CLUSTER or --cluster), or none.

Unset, every job runs in the app's own worker process and Ray is never imported. Set, the
heavy work (feature extraction, the app's jobs) runs on the cluster, whose nodes all see the
same workspace folder ($FLOWER_LENS_HOME on a shared disk).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from flower_model.core.errors import FlowerLensError

CLUSTER_ENV = "FLOWER_LENS_CLUSTER"
# Every Flower Lens process on a cluster works in this Ray namespace (named actors live there).
NAMESPACE = "flower-lens"
# How long connecting to a cluster may take before it is reported as unreachable, in seconds.
CONNECT_SECONDS = 60.0


class ClusterError(FlowerLensError):
    """The Ray cluster could not be reached or used."""


def cluster_address() -> str | None:
    """Return the Ray cluster's address the app and the CLI use ($FLOWER_LENS_CLUSTER), or
    None: then everything runs on this machine, without Ray."""
    return os.environ.get(CLUSTER_ENV, "").strip() or None


@dataclass(frozen=True)
class ClusterInfo:
    """What the connected cluster has."""

    address: str
    nodes: int
    cpus: float
    gpus: float


_connected: list[str] = []
_connecting = threading.Lock()


def connect(address: str | None = None) -> ClusterInfo:
    """Connect this process to the cluster at `address` (else $FLOWER_LENS_CLUSTER), once;
    return what it has. Raise ClusterError in one line if it cannot be reached."""
    address = address or cluster_address()
    if address is None:
        raise ClusterError(f"no cluster is set: set ${CLUSTER_ENV} to a Ray address")
    with _connecting:
        import ray

        if _connected and _connected[0] != address:
            raise ClusterError(
                f"this process already works on the cluster at {_connected[0]}, not {address}"
            )
        if not ray.is_initialized():
            os.environ.setdefault("RAY_gcs_rpc_server_connect_timeout_s", str(int(CONNECT_SECONDS)))
            try:
                ray.init(
                    address=address,
                    namespace=NAMESPACE,
                    log_to_driver=False,
                    logging_level="ERROR",
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                raise ClusterError(f"cannot reach the Ray cluster at {address}: {reason}") from exc
            _connected[:] = [address]
        resources = ray.cluster_resources()
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        return ClusterInfo(address, nodes, resources.get("CPU", 0.0), resources.get("GPU", 0.0))


def disconnect() -> None:
    """Leave the cluster this process works on, if any (tools and tests)."""
    with _connecting:
        if _connected:
            import ray

            ray.shutdown()
            _connected.clear()
