"""The generator zoo: an offline benchmark with real architecture traces. The README's "The generator zoo" says what it holds.

`build_zoo(out_dir, size="demo", photos=None, seed=0, wild=False, progress=print)` trains small
generators of distinct architectures on photos and writes a benchmark folder (`data` reads it);
`ensure_zoo(size="demo", seed=0, progress=print)` builds or reuses one in the cache folder
`default_zoo_dir(size, seed)`.
"""
from dnadet_tf.zoo.build import SIZES, SPLITS, build_zoo, classes_for, default_zoo_dir, ensure_zoo, plan
from dnadet_tf.zoo.generators import FAMILIES, PAPER_FAMILIES, WILD_FAMILIES, build_generator

__all__ = [
    "FAMILIES", "PAPER_FAMILIES", "SIZES", "SPLITS", "WILD_FAMILIES", "build_generator", "build_zoo",
    "classes_for", "default_zoo_dir", "ensure_zoo", "plan",
]
