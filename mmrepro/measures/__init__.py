"""Chapter-specific measurements, named by path in run specs."""
