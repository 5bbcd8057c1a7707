"""What the operator wrote, validated whole before anything runs: inventory, playbooks, fleet.toml, --limit."""
