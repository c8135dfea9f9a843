"""Built-in receivers: one module per component type; each module defines ``FACTORY``."""
