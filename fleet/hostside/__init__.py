"""The cleanup program that runs on each host ("the agent" in the CLI): stdlib only, Python >= 3.8.

Bundled into one file by `fleet.control.bundle` (`fleet agent export PATH`). Modules here import each
other relatively and nothing outside this folder. Contract: docs/agent-protocol.md; its words
(protocol version, slim levels, session kinds, defaults) are in terms.py, its operations in ops/.
"""
