"""What the study runs, bound in gin (`gin/experiments/study_*.gin`).

Every pretraining run is `pretrain_experiments[arch]` + `sizes[size]` + `pretrain_overrides`,
trained for each of `budgets[size]` steps, and of `extra_budgets[arch][size]`, at each
of `seeds` (parameter init, data order, dropout). A point of the study
(`RunSpec.point`) is one (arch, size, budget) over its seeds. Each budget has its own
`wsd` learning-rate schedule (warmup, the peak, a linear cooldown over its last
`cooldown_fraction`): an architecture's longest budget of a size
is trained from scratch and keeps its checkpoints where the shorter budgets' cooldowns
start; each shorter budget branches off there (`checkpoints.branch`) and trains only
its cooldown, which is exactly the run it would have been on its own. The
adaptation runs of a seed (the T5Gemma recipe, docs/adaptation.md) turn that seed's
largest-size, largest-budget DecLLM into the RedLLMs of `adapt_experiments`. The
finetuning runs of a seed start from that seed's largest pretrained model of
`finetune_from[name]` (an architecture), or from its adaptation run of that name.
"""

import dataclasses
from typing import Mapping, Optional, Sequence

import gin

from redllm_jax.errors import ConfigError
from redllm_jax.optimizers import cooldown_start
from redllm_jax.study.runs import RunSpec

ARCHITECTURES = ("decllm", "redllm")


@gin.configurable(module="study")
@dataclasses.dataclass(frozen=True)
class StudyPlan:
  sizes: Mapping[str, str]  # size name -> size gin, smallest first
  budgets: Mapping[str, Sequence[int]]  # size name -> training steps, one run each
  pretrain_experiments: Mapping[str, str]  # decllm/redllm -> experiment gin
  finetune_experiments: Mapping[str, str]  # decllm/redllm/decllm_biattn -> experiment gin
  in_domain: str  # eval task (must be among the experiments' EVAL_TASKS)
  out_of_domain: str
  pretrain_overrides: Sequence[str] = ()  # gin files read after experiment and size
  # Budgets one architecture alone runs, by size (architecture -> size -> steps), e.g.
  # RedLLM's largest size at the training FLOPs and target tokens of DecLLM's longest
  # budget. An architecture's longest budget at the largest size is its largest model.
  extra_budgets: Mapping[str, Mapping[str, Sequence[int]]] = dataclasses.field(default_factory=dict)
  # Microbatches of the pretraining runs, by architecture and size (none listed: the
  # experiment's own). Which count trains fastest depends on both (bench_workers).
  pretrain_microbatches: Mapping[str, Mapping[str, int]] = dataclasses.field(default_factory=dict)
  finetune_overrides: Sequence[str] = ()
  finetune_from: Mapping[str, str] = dataclasses.field(
    default_factory=lambda: {"decllm": "decllm", "redllm": "redllm", "decllm_biattn": "decllm"}
  )
  # Adapted RedLLM name -> gin files read after the experiment and the largest size
  # (its depths and layer-selection rules); none: no adaptation stage.
  adapt_experiments: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
  adapt_experiment: str = "experiments/demo_adapt_redllm.gin"
  adapt_overrides: Sequence[str] = ()  # read after each adaptation's own files
  harness_tasks: str = "tasks/harness/*.jsonl"
  harness_vocab: Optional[str] = None  # SentencePiece model; None: each checkpoint's own
  harness_max_examples: Optional[int] = None  # per task; None: all
  # Tasks read whole whatever the cap: those whose item SE decides a bar (continuation).
  harness_uncapped: Sequence[str] = ()
  # Tasks the glob matches that the study does not score: those a shortcut wins
  # (docs/study_tasks.md: demo_cloze_mc, which a bigram wins).
  harness_excluded: Sequence[str] = ()
  shots: Sequence[int] = (0, 5)
  # Multiple-choice score (harness.MC_METRICS): lm-eval's acc_mutual_info, the option's
  # log-likelihood after the prompt minus after an empty one. A tiny model's option
  # log-likelihoods are mostly how likely each option is on its own (raw or per
  # character): on continuation, the 4-layer d64 DecLLM after 8.2M tokens scored acc
  # 23.4%, acc_norm 22.5%, acc_mutual_info 36.9% +- 2.6 (chance 25%).
  harness_mc_metric: str = "acc_mutual_info"
  training_length: int = 256  # pretraining chunk length (RedLLM: half in, half out)
  extrapolation_factors: Sequence[int] = (1, 2, 4, 8)
  extrapolation_windows: int = 16
  attention_windows: int = 8
  inference_prompt_length: int = 128  # for inference FLOPs per sequence (Pareto plot)
  inference_output_length: int = 128
  seeds: Sequence[int] = (0, 1, 2)  # every point of the ladder
  # Seeds of the largest pair alone (its longest budget, finetuning, harness, length
  # extrapolation, attention), which findings 3 to 7 read; a superset of `seeds`.
  # Empty: `seeds`. The scaling fits read `seeds` only (one run per seed fits nothing).
  largest_seeds: Sequence[int] = ()
  cooldown_fraction: float = 0.2  # of each pretraining budget (the `wsd` schedule)

  def __post_init__(self):
    if not self.sizes or not self.seeds:
      raise ConfigError("study.StudyPlan needs at least one size and one seed")
    missing = [size for size in self.sizes if not self.budgets.get(size)]
    if missing:
      raise ConfigError(f"study.StudyPlan.budgets has no steps for {', '.join(missing)}")
    for what, seeds in (("seeds", self.seeds), ("largest_seeds", self.largest_seeds)):
      if len(set(seeds)) != len(seeds):
        raise ConfigError(f"study.StudyPlan.{what} {list(seeds)} repeats a seed")
    if self.largest_seeds and not set(self.seeds) <= set(self.largest_seeds):
      raise ConfigError(
        f"study.StudyPlan.largest_seeds {list(self.largest_seeds)} must "
        f"include every seed of the ladder {list(self.seeds)}"
      )
    for what, table, keys in (
      ("pretrain_experiments", self.pretrain_experiments, ARCHITECTURES),
      ("finetune_from", self.finetune_from, tuple(self.finetune_experiments)),
    ):
      missing = [k for k in keys if k not in table]
      if missing:
        raise ConfigError(f"study.StudyPlan.{what} has no entry for {', '.join(missing)}")
    for what in ("pretrain_microbatches", "extra_budgets"):
      for arch, by_size in getattr(self, what).items():
        unknown = sorted({arch} - set(ARCHITECTURES)) + sorted(set(by_size) - set(self.sizes))
        if unknown:
          raise ConfigError(
            f"study.StudyPlan.{what} names {', '.join(unknown)}: "
            f"not an architecture ({', '.join(ARCHITECTURES)}) or size "
            f"({', '.join(self.sizes)})"
          )
    sources = (*ARCHITECTURES, *self.adapt_experiments)
    unknown = sorted(set(self.finetune_from.values()) - set(sources))
    if unknown:
      raise ConfigError(
        f"study.StudyPlan.finetune_from names {', '.join(unknown)}: neither "
        f"an architecture nor an adaptation ({', '.join(sources)})"
      )

  @property
  def largest(self) -> str:
    return list(self.sizes)[-1]

  @property
  def analysis_seeds(self) -> Sequence[int]:
    """The seeds of the largest pair, its finetuning and every analysis but the fits."""
    return self.largest_seeds or self.seeds

  def budgets_of(self, arch: str, size: str) -> list[int]:
    """An architecture's budgets at a size: the shared ones and its extra ones, ascending."""
    return sorted({*self.budgets[size], *self.extra_budgets.get(arch, {}).get(size, ())})

  def pretrain_runs(self) -> list[RunSpec]:
    """Every (size, budget, architecture, seed), smallest size first; each architecture's
    longest runs of a size come before the shorter budgets that branch off them."""
    runs = []
    for size in self.sizes:
      # Per architecture: its longest budget first, then the others ascending.
      order = {}
      for arch in ARCHITECTURES:
        budgets = self.budgets_of(arch, size)
        order[arch] = [budgets[-1], *budgets[:-1]]
      for tier in range(max(map(len, order.values()))):
        for arch in ARCHITECTURES:
          if tier < len(order[arch]):
            runs += self._pretrain_runs(arch, size, order[arch][tier], order[arch])
    return runs

  def _pretrain_runs(
    self, arch: str, size: str, steps: int, budgets: Sequence[int]
  ) -> list[RunSpec]:
    longest = budgets[0]
    branch_steps = sorted(cooldown_start(b, self.cooldown_fraction) for b in budgets[1:])
    seeds = self.analysis_seeds if (size, steps) == (self.largest, longest) else self.seeds
    return [self._pretrain_run(arch, size, steps, s, longest, branch_steps) for s in seeds]

  def _pretrain_run(
    self, arch: str, size: str, steps: int, seed: int, longest: int, branch_steps: Sequence[int]
  ) -> RunSpec:
    bindings = [
      f"EVAL_TASKS = {[self.in_domain, self.out_of_domain]!r}",
      "optimizers.learning_rate_schedule.kind = 'wsd'",
      f"optimizers.learning_rate_schedule.cooldown_fraction = {self.cooldown_fraction}",
    ]
    microbatches = self.pretrain_microbatches.get(arch, {}).get(size)
    if microbatches:
      bindings.append(f"train.train.num_microbatches = {microbatches}")
    if steps == longest:
      if seed in self.seeds:  # the ladder's shorter budgets branch off these steps
        bindings.append(f"train.train.keep_steps = {list(branch_steps)}")
      branch = {}
    else:
      branch = {
        "branch_of": f"{arch}_{size}_{longest}_s{seed}",
        "branch_step": cooldown_start(steps, self.cooldown_fraction),
      }
    return RunSpec(
      name=f"{arch}_{size}_{steps}_s{seed}",
      point=f"{arch}_{size}_{steps}",
      architecture=arch,
      size=size,
      steps=steps,
      gin_files=(self.pretrain_experiments[arch], self.sizes[size], *self.pretrain_overrides),
      bindings=tuple(bindings),
      seed=seed,
      **branch,
    )

  def source_run(self, architecture: str, seed: int) -> RunSpec:
    """A seed's largest pretrained model of an architecture (finetuning and analyses start
    here)."""
    name = (
      f"{architecture}_{self.largest}_{self.budgets_of(architecture, self.largest)[-1]}_s{seed}"
    )
    return next(r for r in self.pretrain_runs() if r.name == name)

  def adapt_runs(self) -> list[RunSpec]:
    """Each seed's largest DecLLM adapted into each RedLLM of `adapt_experiments`."""
    return [
      RunSpec(
        name=f"{name}_{self.largest}_s{seed}",
        point=f"{name}_{self.largest}",
        architecture=name,
        size=self.largest,
        gin_files=(self.adapt_experiment, self.sizes[self.largest], *files, *self.adapt_overrides),
        bindings=(f"EVAL_TASKS = {[self.in_domain, self.out_of_domain]!r}",),
        parent=self.source_run("decllm", seed).name,
        seed=seed,
      )
      for name, files in self.adapt_experiments.items()
      for seed in self.analysis_seeds
    ]

  def _finetune_source(self, name: str, seed: int) -> tuple[str, RunSpec]:
    """(kind, run) a finetuning run starts from."""
    source = self.finetune_from[name]
    if source in ARCHITECTURES:
      return "pretrain", self.source_run(source, seed)
    return "adapt", next(
      r for r in self.adapt_runs() if r.name == f"{source}_{self.largest}_s{seed}"
    )

  def finetune_runs(self) -> list[RunSpec]:
    runs = []
    for name, experiment in self.finetune_experiments.items():
      for seed in self.analysis_seeds:
        kind, parent = self._finetune_source(name, seed)
        # An adapted model keeps its adaptation's depths (read after the size gin).
        adapted = (
          self.adapt_experiments.get(self.finetune_from[name], ()) if kind == "adapt" else ()
        )
        runs.append(
          RunSpec(
            name=f"{name}_{self.largest}_flan_s{seed}",
            point=f"{name}_{self.largest}_flan",
            architecture=name,
            size=self.largest,
            gin_files=(experiment, self.sizes[self.largest], *adapted, *self.finetune_overrides),
            parent=parent.name,
            parent_kind=kind,
            seed=seed,
          )
        )
    return runs
