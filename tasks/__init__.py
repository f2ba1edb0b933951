"""seqio task and mixture registrations (import name: `redllm_jax_tasks`).

Importing registers every task; none touches the file system until read.
"""

from redllm_jax_tasks import demo  # noqa: F401
from redllm_jax_tasks import flan  # noqa: F401
from redllm_jax_tasks import paloma  # noqa: F401
from redllm_jax_tasks import redpajama  # noqa: F401
