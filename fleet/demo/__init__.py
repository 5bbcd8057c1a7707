"""The local demo fleet: generated OpenClaw state (gen/), private sshd servers on loopback, and `fleet demo`."""
