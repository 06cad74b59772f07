"""An English pre-training corpus from Debian packages, and the markup cleaners it is made with.

    python -m electra_jax.corpus --output_dir=runs/corpus --stats=benchmarks/results/corpus_stats.json

Modules:
  text        sentence splitting, the English-prose test, plain-text and WikiText documents
  rst, html, pod, info, dictionary
              one cleaner per markup family: Sphinx reST, HTML, Perl POD, GNU info, GCIDE and WordNet
  documents   deduplication, joining short documents, the deterministic held-out split
  debian      apt-get download + dpkg -x into a cache (no root, no install), licences from copyright files
  sources     the Debian sources (package, files, family) and the family registry
  build       the build itself and its per-source statistics
  local       the CPU experiment's corpus from local folders (compute_efficiency's first stage)

Nothing here imports TensorFlow, JAX or torch; token counting uses electra_jax.data's tokenizer.
"""
