"""Checks of a benchmark script's arguments shared by several scripts, each refusing in one parser error line
(exit status 2) before any work.

`refuse_given_twice(parser, paths, message)`: a run dir, data path or result file given twice, however it is
written (another spelling, `.`, `..`, a trailing slash, a symlink), would be counted twice in a mean, a pooled
figure or a table; it is refused by its real path (`os.path.realpath`). Each script words its own line
(`message`), as its tests and users know it.
"""
import os


def refuse_given_twice(parser, paths, message):
    """One `parser.error` line (exit status 2) for the first of `paths` whose real path an earlier one has.

    `message(path, earlier, real)` -> the line: `path` as given the second time, `earlier` as given the first
    time, `real` the real path both name. Returns {real path: the path as first given} (in the order given) when
    no path is given twice."""
    seen = {}
    for path in paths:
        real = os.path.realpath(path)
        if real in seen:
            parser.error(message(path, seen[real], real))
        seen[real] = path
    return seen
