"""A stand-in worker for the launcher test: process 1 is killed, the others hang."""

import os
import signal
import time

if os.environ["REDLLM_PROCESS_ID"] == "1":
  time.sleep(1.0)
  os.kill(os.getpid(), signal.SIGKILL)
time.sleep(300)
