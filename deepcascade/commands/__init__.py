"""One module per ``deepcascade`` subcommand (see ``deepcascade/cli.py``)."""
