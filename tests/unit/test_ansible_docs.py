"""Every plugin of the acklab.lab collection documents itself in YAML that ansible-doc can read."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = (Path(__file__).resolve().parents[2] / "ansible" / "collections" / "ansible_collections" / "acklab" / "lab"
        / "plugins")
# module_utils are shared code, doc_fragments hold options the modules share (checked below): no plugin documentation
PLUGINS = sorted(p for p in ROOT.glob("*/*.py") if p.parent.name not in ("module_utils", "doc_fragments"))
FRAGMENTS = sorted(ROOT.glob("doc_fragments/*.py"))


@pytest.mark.parametrize("path", PLUGINS, ids=[f"{p.parent.name}/{p.stem}" for p in PLUGINS])
def test_documentation_examples_and_return_are_yaml(path):
    blocks = {node.targets[0].id: node.value.value for node in ast.parse(path.read_text()).body
              if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") in
              ("DOCUMENTATION", "EXAMPLES", "RETURN")}
    assert "DOCUMENTATION" in blocks
    for name, text in blocks.items():
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as exc:
            pytest.fail(f"{path.name} {name}: {exc}")
    doc = yaml.safe_load(blocks["DOCUMENTATION"])
    assert doc.get("short_description") and doc.get("description")


@pytest.mark.parametrize("path", FRAGMENTS, ids=[p.stem for p in FRAGMENTS])
def test_doc_fragments_are_yaml_with_options(path):
    (fragment,) = [node for node in ast.parse(path.read_text()).body if isinstance(node, ast.ClassDef)]
    texts = [node.value.value for node in fragment.body
             if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DOCUMENTATION"]
    assert texts, f"{path.name}: no DOCUMENTATION"
    assert yaml.safe_load(texts[0]).get("options")
