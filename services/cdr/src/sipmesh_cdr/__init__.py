"""sipmesh cdr service."""
