"""Provider parsers: bytes in, attributes out. No OpenTelemetry calls here."""
