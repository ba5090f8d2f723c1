"""upstream layer."""
