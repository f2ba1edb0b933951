"""What changed since the previous committed study run (docs/study at commit 35d0987, run
from the code at f96ba16, 2026-12-07 13:38): its verdicts, and every change to the rules
and the study since, with its reason. The report prints both beside this run's verdicts.
The changes before that run are in its own report (`git show 35d0987:docs/study/REPORT.md`)."""

PREVIOUS_RUN = (
  "2026-12-07 13:38, commit 35d0987: ladder 3 seeds, l pair 5 seeds, "
  "continuation 1414 items, 45.0 min"
)
# (verdict, strength as printed then: the largest p the verdict rested on)
PREVIOUS_VERDICTS = (
  ("reproduced", "p = 0.048"),
  ("inconclusive", "p = 0.146"),
  ("reproduced", "p < 0.001"),
  ("not reproduced", "p = 0.003"),
  ("inconclusive", "p = 0.053"),
  ("partly reproduced", "p = 0.007"),
  ("reproduced", "p = 0.018"),
)

# (change, why) for each change to the rules, tasks or study design since that run.
RULE_CHANGES: tuple[tuple[str, str], ...] = (
  (
    "The largest pair is compute-matched: RedLLM's l model trains 1000 steps "
    "(`StudyPlan.extra_budgets`), the training FLOPs and target tokens of DecLLM's 500, "
    "and findings 3 to 7 read it; its 500-step run (the paper's equal-steps pairing, half "
    "the target tokens) stays in the ladder as a branch of it",
    "at 500 steps the l RedLLM read continuation at its floor (26.0% against 25.2, 0.6 SE "
    "over it), so the harness findings compared a model the task could not see; one seed "
    "trained to 1000 steps read 28.7% (25.9% at 500), and equal training FLOPs is the axis "
    "the paper's own frontier finding compares on",
  ),
  (
    "A score's item SE is the SE over items of each item's mean over the seeds "
    "(`stats.item_se`), no longer the binomial SE of the mean score; a group's is that of "
    "the mean of its tasks. The continuation bar prints z under both",
    "every seed answers the same items, so an item is one draw whichever seeds answered "
    "it; the binomial SE counted each seed's coin flips as if one seed had answered "
    "(Miller 2024, 'Adding error bars to evals'). On the previous run's 5 seeds of the "
    "l pair it was 1.22 (DecLLM) and 1.17 (RedLLM) points against 0.79 and 0.72 from the "
    "per-item means. Decided before this run started, from the previous run's files",
  ),
)
