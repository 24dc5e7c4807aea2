"""Every Python example in the package's README runs, in order, against the live server."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_examples_run(server, api_key, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 4, "the README's examples went missing"
    monkeypatch.setenv("CLERK_INDEX_SERVER", server)
    monkeypatch.setenv("CLERK_INDEX_API_KEY", api_key)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
