"""Built-in processors: one module per component type; each module defines ``FACTORY``."""
