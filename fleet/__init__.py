"""fleet: keep a fleet of OpenClaw agent hosts healthy."""

__version__ = "0.1.0"
