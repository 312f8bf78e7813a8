"""The generated README's factor map names the conformance tests that guard each factor; the map can't rot.

Every test the map names exists in the bake's tests/test_twelve_factors.py, on the row of its own factor,
and every conformance test is named there: the README and the suite describe the same promises.
"""

from __future__ import annotations

import ast
import re

from support import Bake

ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"]
FACTOR_TEST = re.compile(r"`(test_factor_(\d\d)_\w+)`")


def factor_map_rows(bake: Bake) -> dict[str, str]:
    """{roman numeral: row} of the README's factor map."""
    readme = (bake.project / "README.md").read_text()
    section = readme.split("## The twelve factors, and where they live", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and (match := re.match(r"\| ([IVX]+)\. ", line)):
            rows[match[1]] = line
    return rows


def conformance_tests(bake: Bake) -> list[str]:
    tree = ast.parse((bake.project / "tests" / "test_twelve_factors.py").read_text())
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    return [name for name in functions if name.startswith("test_")]


def test_conformance_suite_has_a_factor_named_test_for_every_factor(default_bake: Bake) -> None:
    tests = conformance_tests(default_bake)
    numbers = {int(match[1]) for name in tests if (match := re.match(r"test_factor_(\d\d)_", name))}
    assert numbers == set(range(1, 13))
    assert all(name.startswith("test_factor_") for name in tests), "every conformance test names its factor"


def test_factor_map_has_a_row_per_factor_each_naming_a_test(default_bake: Bake) -> None:
    rows = factor_map_rows(default_bake)
    assert list(rows) == ROMAN
    for numeral, row in rows.items():
        assert FACTOR_TEST.search(row), f"factor {numeral} names no conformance test in the README"


def test_every_test_the_factor_map_names_exists_on_its_own_factors_row(default_bake: Bake) -> None:
    existing = set(conformance_tests(default_bake))
    for numeral, row in factor_map_rows(default_bake).items():
        for name, number in FACTOR_TEST.findall(row):
            assert name in existing, f"the README names {name}, which tests/test_twelve_factors.py lacks"
            assert ROMAN[int(number) - 1] == numeral, f"{name} is on factor {numeral}'s row"


def test_every_conformance_test_is_named_in_the_factor_map(default_bake: Bake) -> None:
    named = {name for row in factor_map_rows(default_bake).values() for name, _ in FACTOR_TEST.findall(row)}
    assert set(conformance_tests(default_bake)) - named == set()
