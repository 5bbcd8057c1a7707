"""Reaching hosts: plans, the bundled host-side program, SSH/local transport, the parallel runner, and the scan/run/restore commands with their one finish()."""
