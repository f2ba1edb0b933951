"""Tools around the core: the benchmark suite, the AOT memory plan, parameter and
FLOPs counts of a model gin, and the input-pipeline benchmark."""
