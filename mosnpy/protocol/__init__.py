"""Protocol layer: sans-I/O codecs that turn bytes into stream events and back.

Nothing here imports trio, sockets or clocks (an import-linter contract checks it).
"""
