"""sipmesh media service."""
