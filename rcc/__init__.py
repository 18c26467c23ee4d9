"""rcc: an ONNX-to-ReRAM compiler with a bit-accurate machine model verified against onnxruntime.

The import package is `rcc`; its layers live in the repository's top-level folders and are mapped
into it by pyproject.toml's package-directory table:

    rcc.ir        ir/        the IR: types, ops and their table, text form, interpreter
    rcc.compiler  compiler/  ONNX frontend, passes, pass manager, verification, the `rcc` command
    rcc.backends  backends/  the ReRAM target, weight mapping, program format and emission
    rcc.runtime   runtime/   the machine model that executes programs

`python -m rcc` runs the command line.
"""


def __getattr__(name: str) -> str:
    """`rcc.__version__`, read from the installed metadata on first use: importing importlib.metadata costs
    about 45 ms of every command's start-up, and only `--version` and the internal-error line need it."""
    if name != "__version__":
        raise AttributeError(f"module 'rcc' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version
    try:
        found = version("rcc")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found
