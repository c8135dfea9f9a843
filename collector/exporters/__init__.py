"""Built-in exporters: one module per component type; each module defines ``FACTORY``."""
