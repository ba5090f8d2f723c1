"""The runtime: wires a :class:`~mosnpy.config.MosnConfig` into running layers."""

from mosnpy.runtime.builder import build_listeners
from mosnpy.runtime.server import BindError, MosnServer, run

__all__ = ["BindError", "MosnServer", "build_listeners", "run"]
