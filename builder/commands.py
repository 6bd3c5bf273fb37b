"""Commands of the build step (build), registered by leafsub.cli."""

from .build import build_command

COMMANDS = [build_command]
