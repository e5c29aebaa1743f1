"""The ``lightpool`` command line: one entry point, one sub-command group per area.

Groups are imported lazily so that ``lightpool --help`` is fast and an area's heavy imports
(ape, numpy, streamlit) load only when that area is used.
"""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute" of a click command or group.
COMMANDS: dict[str, str] = {
    "demo": "offchain.demo:demo",
    "chain": "offchain.chain.cli:chain",
    "profile": "offchain.cloud.cli:profile",
    "plan": "offchain.cloud.cli:plan",
    "models": "offchain.models.cli:models",
    "optimize": "offchain.optimizer.cli:optimize",
    "keeper": "offchain.keeper.cli:keeper",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)


@click.group(cls=LazyGroup)
@click.version_option(package_name="lightpool")
def main() -> None:
    """LightPool: an open wealth-management platform on a shared ledger."""


if __name__ == "__main__":
    main()
