"""Commands of this step, registered by leafsub.cli."""

COMMANDS = []
