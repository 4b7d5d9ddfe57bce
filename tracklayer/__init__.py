"""TrackLayer: a self-hosted server-side conversion delivery daemon."""

__version__ = "0.1.0"
