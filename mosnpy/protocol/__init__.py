"""Protocol layer: per protocol a sans-I/O codec and the stream connections over it.

``api`` is the layer's public API — neutral stream events and commands, the server and
client stream-connection contracts, pool modes — with ``headers`` (the header map) and
``registry`` (protocol descriptors by name): the layers above import only these.
``http1`` and ``xprotocol`` implement them.  Nothing here imports trio, sockets or
clocks (an import-linter contract checks it).
"""
