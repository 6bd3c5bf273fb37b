"""The data tools and the demo, registered by leafsub.cli."""

from .data import data_group
from .demo import demo_command

COMMANDS = [data_group, demo_command]
