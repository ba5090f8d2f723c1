"""Built-in stream filters, registered through the same entry points as plugins."""
