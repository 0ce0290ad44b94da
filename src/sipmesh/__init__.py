"""The sipmesh command line."""
