"""Built-in extensions: one module per component type; each module defines ``FACTORY``."""
