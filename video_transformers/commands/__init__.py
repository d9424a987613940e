"""`vt` commands beyond the Trainer subcommands (each module has ``main(argv) -> int``)."""
