"""sweeper: batch parameter-sweep runner for the 1min.ai Flux Depth Dev image editor."""

__version__ = "0.1.0"
