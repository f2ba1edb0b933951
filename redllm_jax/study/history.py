"""What changed since the previous committed study run (docs/study at commit 7d198a8,
2026-12-07 05:27): its verdicts, and every change to the rules and the study since, with
its reason. The report prints both beside this run's verdicts. The changes before that
run are in its own report (`git show 7d198a8:docs/study/REPORT.md`)."""

PREVIOUS_RUN = ("2026-12-07 05:27, commit 7d198a8: ladder 3 seeds, l pair 5 seeds, "
                "continuation 639 items, 48.9 min")
# (verdict, strength as printed then: the largest p the verdict rested on)
PREVIOUS_VERDICTS = (
    ("reproduced", "p = 0.048"),
    ("inconclusive", "p = 0.146"),
    ("reproduced", "p < 0.001"),
    ("not reproduced", "p = 0.003"),
    ("inconclusive", "p = 0.053"),
    ("partly reproduced", "p = 0.007"),
    ("inconclusive", "p = 0.097"),
)

RULE_CHANGES = (
    ("Continuation has 1414 items (was 639): every held-out Bible and Wikipedia unit the "
     "adversarial filter can serve, each item's distractors chosen among 128 candidates "
     "(was 48; the next family's likewise, its floor 26.5); every continuation shortcut "
     "within 0.2 points of chance both ways",
     "the continuation bar (3 SE above the floor) failed at 2.0 SE with an item SE of 1.8 "
     "points; 1414 items bring it to 1.2"),
)
