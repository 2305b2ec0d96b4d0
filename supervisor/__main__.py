"""`litestream-supervisor` and `python -m supervisor`: the collector paused, then the command line."""

from supervisor.core import memory


def main() -> None:
    memory.pause()
    # imported only now: the imports are the start-up the pause is for
    from supervisor.commands.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
