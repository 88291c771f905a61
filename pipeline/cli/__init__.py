"""The ``inbound-audit`` command line: one module per sub-command."""

from pipeline.cli.main import main

__all__ = ["main"]
