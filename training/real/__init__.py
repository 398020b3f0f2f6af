"""Validation on real footage without hand labels.

Issue 16 item 1; docs/evaluation.md, "Real footage".

`metrics` holds the pure metrics, `reference` the label-free people masks (background subtraction
for a static-camera video), `baselines` the image-independent predictions printed beside every
number, `fetch` assembles the set from installed Debian/PyPI packages, and `cli` is
`hcdp eval-real`. This set is for measuring only: nothing here is ever a training input.
"""
