"""rcc's compiler: the ONNX frontend, the passes and pass manager, the `rcc` command line, reports."""
