"""The `rcc` commands, one module each: argparse, printing and writing files. Each command is
`command(argv) -> exit code` and does its work through Python calls of the layers below."""
