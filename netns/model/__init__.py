"""The cloud model: pure rules (addressing, names, validation) with no kernel access."""
