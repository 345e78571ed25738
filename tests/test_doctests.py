"""The examples in the docstrings of the key public functions run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

# module -> functions whose docstrings must carry a runnable example
EXAMPLES = {
    "nsiter.registry": ("load_schedule",),
    "nsiter.analysis": ("analyze", "certified_error", "steps_to", "image_interval"),
    "nsiter.dynamics": ("convergence_bound", "stability"),
    "nsiter.symbolic": ("newton_schulz_family",),
}


@pytest.mark.parametrize("module", sorted(EXAMPLES))
def test_docstring_examples_run(module):
    mod = importlib.import_module(module)
    finder = doctest.DocTestFinder()
    tests = {t.name.rsplit(".", 1)[-1]: t for t in finder.find(mod) if t.examples}
    missing = [f for f in EXAMPLES[module] if f not in tests]
    assert not missing, f"{module}: no example in the docstring of {missing}"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests.values():
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0 and result.attempted >= len(EXAMPLES[module]), result


def test_a_wrong_example_fails():
    """The runner above reports a docstring whose output is wrong (so the test can fail)."""

    def wrong():
        """
        >>> 1 + 1
        3
        """

    test = doctest.DocTestFinder().find(wrong, "wrong", globs={})[0]
    runner = doctest.DocTestRunner()
    runner.run(test, out=lambda _: None)
    assert runner.summarize(verbose=False).failed == 1
