"""The ``engineshed`` command line: the program in :mod:`engineshed.cli.main`, its client commands in
:mod:`engineshed.cli.commands`."""
