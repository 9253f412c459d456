"""gRPC core's settings for the control plane's process, made before `grpc` is first imported (gRPC core reads
GRPC_EXPERIMENTS then, once).

The xDS server's connections (one per proxy, mTLS) are served by gRPC core's own I/O - on the thread that waits on
the completion queue and the thread that starts a write - not by EventEngine endpoints: there every read and write
is handed from one thread of the EventEngine's pool to another (futex wake-ups). A push to 2000 proxies made
~8,600 voluntary context switches in the control plane (~1,600 without) and cost 0.47 CPU-s (0.35 without); on a
machine whose cores the proxies share, each wake-up also takes a core from the thread that builds the responses.
(Measured with the real AdsServer and 2000 mTLS streams on connections of their own, grpcio 1.85.) Clients - the
control plane has none on this path - keep EventEngine. An operator's GRPC_EXPERIMENTS wins.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

# Connections the server's listener accepts, and any endpoint the EventEngine client did not make: gRPC core's
# own I/O (iomgr's epoll poller) instead of EventEngine endpoints.
GRPC_EXPERIMENTS = "-event_engine_listener,-event_engine_for_all_other_endpoints"


def use_grpc_experiments() -> bool:
    """Import grpc with GRPC_EXPERIMENTS set (unless the environment sets it); the environment is left as it was,
    for child processes. False: grpc was imported already (nothing changed)."""
    if "grpc" in sys.modules:
        log.warning("grpc was imported before the control plane's gRPC settings: GRPC_EXPERIMENTS not applied")
        return False
    if "GRPC_EXPERIMENTS" in os.environ:
        return True
    os.environ["GRPC_EXPERIMENTS"] = GRPC_EXPERIMENTS
    try:
        import grpc  # noqa: F401 - gRPC core reads the experiments now
    finally:
        del os.environ["GRPC_EXPERIMENTS"]
    return True
