"""Commands of the training-side steps (export, build), registered by leafsub.cli."""

from .export import export_command
from .build import build_command

COMMANDS = [export_command, build_command]
