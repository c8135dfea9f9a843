"""GenAI-specific logic shared by the processors: reading spans under every convention generation."""
