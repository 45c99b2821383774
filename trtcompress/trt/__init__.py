"""TensorRT: version facts, engine builds and runs through Polygraphy (tensorrt imported lazily)."""
