"""What changed since the previous committed study run (docs/study at commit ad0126e, run
from the code at 4b4b97d, 2026-12-08 01:44): its verdicts, and every change to the rules
and the study since, with its reason. The report prints both beside this run's verdicts.
The changes before that run are in its own report (`git show ad0126e:docs/study/REPORT.md`)."""

PREVIOUS_RUN = (
  "2026-12-08 01:44, commit ad0126e: ladder 3 seeds, l pair 5 seeds (RedLLM's at 1000 "
  "steps), continuation 1414 items, the demo read from TFDS datasets, 55.9 min"
)
# (verdict, strength as printed then: the largest p the verdict rested on)
PREVIOUS_VERDICTS = (
  ("reproduced", "p = 0.013"),
  ("partly reproduced", "p = 0.004"),
  ("reproduced", "p < 0.001"),
  ("not reproduced", "p = 0.034"),
  ("not reproduced", "p < 0.001"),
  ("partly reproduced", "p = 0.002"),
  ("not reproduced", "p < 0.001"),
)

# (change, why) for each change to the rules, tasks or study design since that run.
RULE_CHANGES: tuple[tuple[str, str], ...] = ()
