"""sipmesh_bus: the contract between sipmesh services (subjects, schemas, runtime)."""
