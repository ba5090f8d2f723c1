"""The runtime: wires a :class:`~mosnpy.config.MosnConfig` into running layers."""

from mosnpy.runtime.builder import build_listeners
from mosnpy.runtime.server import MosnServer, run

__all__ = ["MosnServer", "build_listeners", "run"]
