"""What changed since the previous committed study run (docs/study at commit fde06f6, run
from the code at b22daeb, 2026-12-07 21:23): its verdicts, and every change to the rules
and the study since, with its reason. The report prints both beside this run's verdicts.
The changes before that run are in its own report (`git show fde06f6:docs/study/REPORT.md`)."""

PREVIOUS_RUN = (
  "2026-12-07 21:23, commit fde06f6: ladder 3 seeds, l pair 5 seeds (RedLLM's at 1000 "
  "steps), continuation 1414 items, 52.5 min"
)
# (verdict, strength as printed then: the largest p the verdict rested on)
PREVIOUS_VERDICTS = (
  ("inconclusive", "p = 0.113"),
  ("partly reproduced", "p = 0.035"),
  ("reproduced", "p < 0.001"),
  ("not reproduced", "p = 0.014"),
  ("not reproduced", "p = 0.004"),
  ("partly reproduced", "p < 0.001"),
  ("reproduced", "p = 0.018"),
)

# (change, why) for each change to the rules, tasks or study design since that run.
RULE_CHANGES: tuple[tuple[str, str], ...] = (
  (
    "The demo corpus is read from TFDS datasets (`redllm_demo`, built by the project's "
    "builders) instead of the TFRecord converter's files: the same records, vocabularies "
    "and instruction families byte for byte, stored as one file a split where four were "
    "interleaved, so every run reads the same text in another order and cuts other chunks",
    "one way to prepare data for every corpus, TFDS builders with a Beam path for "
    "RedPajama-scale preparation (issue 31); the seeds, rules and tasks are unchanged",
  ),
)
