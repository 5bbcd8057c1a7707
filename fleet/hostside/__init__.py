"""The cleanup agent that runs on each host: stdlib only, Python >= 3.8.

Bundled into one file by `fleet.control.bundle` (`fleet agent export PATH`). Modules here import each
other relatively and nothing outside this folder. Contract: docs/agent-protocol.md.
"""

AGENT_VERSION = "0.1.0"
PROTOCOL_VERSION = 1
