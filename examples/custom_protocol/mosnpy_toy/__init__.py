"""A toy private RPC protocol for mosnpy: the whole plugin is ``codec.py``."""
