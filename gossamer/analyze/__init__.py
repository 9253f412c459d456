"""`gossamer analyze`: Istio's configuration analyzers (istioctl analyze) over files, cluster dumps or
the running mesh's config. Same codes and levels as Istio, our own wording, file:line per field.

    loaded = load_for_analysis([(name, text), ...], namespace="default")
    messages = run_analyzers(loaded.resources, mesh_config, namespace="default")  # None: all namespaces
"""

from gossamer.analyze.loading import Loaded, load_for_analysis
from gossamer.analyze.mesh import MeshConfig, mesh_config_from_resources, parse_mesh_config
from gossamer.analyze.messages import TYPES, Message, MessageType
from gossamer.analyze.run import all_analyzers, run_analyzers

__all__ = [
    "TYPES",
    "Loaded",
    "MeshConfig",
    "Message",
    "MessageType",
    "all_analyzers",
    "load_for_analysis",
    "mesh_config_from_resources",
    "parse_mesh_config",
    "run_analyzers",
]
