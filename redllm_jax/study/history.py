"""What changed since the previous committed study run (docs/study at commit bcc0448,
2026-12-07 01:43): its verdicts, and every change to the rules and the study since, with
its reason. The report prints both beside this run's verdicts. The changes before that
run are in its own report (`git show bcc0448:docs/study/REPORT.md`)."""

PREVIOUS_RUN = ("2026-12-07 01:43, commit bcc0448: ladder 3 seeds, l pair 5 seeds, "
                "continuation 517 items, 50.4 min")
# (verdict, strength as printed then: the largest p the verdict rested on)
PREVIOUS_VERDICTS = (
    ("reproduced", "p = 0.048"),
    ("inconclusive", "p = 0.146"),
    ("inconclusive", "p n/a"),
    ("inconclusive", "p n/a"),
    ("inconclusive", "p = 0.053"),
    ("partly reproduced", "p = 0.007"),
    ("inconclusive", "p n/a"),
)

RULE_CHANGES = (
    ("The study's multiple-choice tasks have every shortcut, read either way, within 5 "
     "points of chance: continuation (639 items) and the next family refiltered with quotas "
     "on both ends and exactly balanced answer positions; cloze_mc no longer scored",
     "the referee's bar: the continuation floor was the answer position (28.4%), the "
     "bigram's best option 6-9 points below chance, next's word overlap 40%"),
    ("Every model reads the continuation and cloze tasks as plain text; only the "
     "instruction families are read in the FLAN format by tuned models (before: tuned "
     "models read every task in the FLAN format)",
     "read in the FLAN format, the same pretrained l DecLLM scored 9.6% on cloze_mc against "
     "29.3% read plain: the 'erasure' by tuning (29.6 -> 9.2) was the prompt format"),
)
