"""Every Python example in the README and in the guides under docs/ runs as written."""

import re

import pytest

from documents import DOCUMENTS, README, ROOT


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


EXAMPLES = [
    pytest.param(path, index, code, id=f"{path.relative_to(ROOT).as_posix()}-{index}")
    for path in DOCUMENTS
    for index, code in enumerate(python_blocks(path))
]


def test_readme_has_examples():
    assert len(python_blocks(README)) >= 2


@pytest.mark.parametrize(("path", "index", "code"), EXAMPLES)
def test_example_runs(path, index, code):
    exec(compile(code, f"{path.relative_to(ROOT).as_posix()} example {index}", "exec"), {})
