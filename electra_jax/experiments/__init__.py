"""Experiments that produce the evidence behind the README's claims.

The compute-efficiency experiment (ELECTRA vs masked LM at equal pre-training FLOPs) is one command,
`python -m electra_jax.experiments.compute_efficiency`, in modules by concern:

  compute_efficiency  the command: the corpus stage and the order of the stages
  budgets             the scales (toy, cpu, gpu), the objectives (name -> config overrides), the GLUE tasks
  inputs              the vocabulary, the records (build_data), the GLUE folders, the resume check
  pretraining         equal-FLOPs step plans and the pre-training runs
  finetuning          fine-tuning one task for every checkpoint, in process or in worker processes
  report              results.json, results.md, the plot: a function of the output folder
  stages              stage wall times, whole-file writes, the package's tools as subprocesses
  bundle              the corpus, GLUE and vocabulary packed for a machine that downloads nothing
"""
