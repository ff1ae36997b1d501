"""The customer's seed study, reproduced as a repeatable pipeline and measured as search.

`python -m training seed-study --data DIR --out DIR` runs every step in order:

1. `eda` — exploration of the annotations, queries and photos (plots + numbers);
2. `target` — the study's aggregate target (normalised expert mean, crowd share otherwise);
3. `exclusion` — legal exclusion with the engine's own filter (restricted queries, photos whose
   captions describe children);
4. `features` — text and photo tower features, cached on disk, and the pair vectors;
5. `models` + `split` + `evaluation` — the study's regressors and ours over the dual encoder,
   cross-validated by photo (GroupKFold) with regression and ranking metrics;
6. `evaluation` — every model ranks the 100 seed test photos for the 500 test queries;
7. `report` — report.md / report.html / metrics.json / PNGs, the conclusion written from the
   measured numbers; the best scorer saved as an `engine.rerank` artifact.

Modules keep pure logic (target, agreement, metrics, split) apart from I/O (loaders, caches,
plots, report writing) so the logic is unit-tested on hand-made examples.
"""
