"""Source-level guarantees: safe YAML, weights-only checkpoints, no shell, no eval, no pickles."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for d in ("pipeline", "stages", "benchmarks") for p in (ROOT / d).rglob("*.py"))

RULES = {
    "yaml.load without SafeLoader": re.compile(r"yaml\.(load|load_all|unsafe_load|full_load)\((?![^)]*SafeLoader)"),
    "torch.load without weights_only=True": re.compile(r"torch\.load\((?![^)]*weights_only=True)"),
    "shell=True": re.compile(r"shell\s*=\s*True"),
    "eval/exec": re.compile(r"(?<![\w.])(eval|exec)\("),
    "pickle": re.compile(r"\bimport pickle\b|\bpickle\.loads?\(|allow_pickle\s*=\s*True"),
}


def test_sources_were_found():
    assert len(SOURCES) > 50


def test_no_unsafe_calls_in_sources():
    found = []
    for path in SOURCES:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            for name, rule in RULES.items():
                if rule.search(code):
                    found.append(f"{path.relative_to(ROOT)}:{lineno}: {name}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_rules_catch_what_they_should():
    assert RULES["torch.load without weights_only=True"].search("torch.load(path)")
    assert not RULES["torch.load without weights_only=True"].search("torch.load(p, weights_only=True)")
    assert RULES["yaml.load without SafeLoader"].search("yaml.load(text)")
    assert RULES["eval/exec"].search("x = eval(s)") and not RULES["eval/exec"].search("model.eval()")
