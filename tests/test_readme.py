"""The README stays a user's document that runs as written: short, no issue numbers, links and files that
exist, and `counterfeit` commands and flags that the command line has. Fast: no server, no network."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from counterfeit.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
MAX_LINES = 350

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
INLINE = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
HTML_SRC = re.compile(r"\b(?:src|href)=\"([^\"]+)\"")
ISSUE_REFS = (
    re.compile(r"(?<![\w&/])#\d+\b"),  # "#22"; link targets and URLs are removed first
    re.compile(r"\b(?:issues?|pull requests?|PRs?)\s*#?\s*\d+\b", re.I),  # "issue 15", "issues 22 and 23", "PR 7"
)
HISTORY = re.compile(r"\btried and (?:dropped|not kept)\b|\bprevious (?:version|pipeline|model)\b|\bused to be\b",
                     re.I)
IMAGE_PATH = re.compile(r"(?:^|(?<=[\s=@,'\"(]))([\w.-]+(?:/[\w.-]+)+\.(?:jpe?g|png|webp|heic|heif))\b", re.I)
UPLOAD = re.compile(r"=@(?!\"?\$)\"?([^\s\"']+)")  # curl -F field=@path (not a $variable)
SEGMENT_SPLIT = re.compile(r"&&|\|\||\||;|\$\(")
ENV_ASSIGNMENTS = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)+")
ERROR_LINE = re.compile(r"^counterfeit(?: [\w-]+)*: (?:error|interrupted)\b")


def readme() -> str:
    return README.read_text(encoding="utf-8")


# ---------------------------------------------------------------- what the README says

def code_blocks(text: str) -> list[str]:
    return FENCE.findall(text)


def code_spans(text: str) -> list[str]:
    """Inline code outside fenced blocks; a span may wrap across lines in Markdown."""
    return [" ".join(span.split()) for span in INLINE.findall(FENCE.sub("", text))]


def shell_lines(text: str) -> list[str]:
    """Every line of every fenced block (continuations joined), then every inline code span."""
    lines = []
    for block in code_blocks(text):
        lines += block.replace("\\\n", " ").splitlines()
    return lines + code_spans(text)


def counterfeit_commands(text: str) -> list[list[str]]:
    """The arguments of each `counterfeit ...` command the README shows (in blocks and inline code)."""
    commands = []
    for line in shell_lines(text):
        for segment in SEGMENT_SPLIT.split(line):
            segment = ENV_ASSIGNMENTS.sub("", segment.strip())
            if " -m counterfeit " in f" {segment} ":  # python -m counterfeit / torchrun ... -m counterfeit
                segment = segment[segment.index("-m counterfeit") + 3:]
            segment = re.sub(r"^(?:\S*/)?counterfeit\b", "counterfeit", segment)  # .venv/bin/counterfeit
            if not segment.startswith("counterfeit ") or ERROR_LINE.match(segment):
                continue
            segment = re.split(r"\s#|\s\d?>|\)", segment)[0]  # a comment, a redirection, the end of $( ... )
            try:
                words = shlex.split(segment)
            except ValueError:
                words = segment.split()
            commands.append(words[1:])
    return commands


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def command_problems(args: list[str]) -> list[str]:
    """What is wrong with `counterfeit ARGS`: an unknown command or sub-command, or an unknown option."""
    parser, words = build_parser(), list(args)
    while (commands := subcommands(parser)) and words and not words[0].startswith("-"):
        if words[0] not in commands:
            return [f"`{parser.prog} {words[0]}`: no such command (it has: {', '.join(sorted(commands))})"]
        parser = commands[words.pop(0)]
    if subcommands(parser) and not any(word in ("-h", "--help", "--version") for word in words):
        return [f"`{parser.prog}` needs a sub-command ({', '.join(sorted(subcommands(parser)))})"]
    known, help_text = options(parser), parser.format_help()
    return [f"`{parser.prog}` has no option {flag} (see {parser.prog} --help)"
            for flag in (word.split("=", 1)[0] for word in words if word.startswith("--"))
            if flag not in known or flag not in help_text]


def relative_links(text: str) -> list[str]:
    targets = LINK.findall(text) + HTML_SRC.findall(text)
    return [target for target in targets if not re.match(r"^(?:[a-z][a-z0-9+.-]*:|#|//)", target, re.I)]


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file (fenced blocks left out)."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", markdown), re.M):
        text = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower())
        anchors.add(text.replace(" ", "-"))
    return anchors


def issue_references(text: str) -> list[str]:
    prose = LINK.sub("]()", text)  # link targets may hold anchors such as (#4-serve)
    prose = re.sub(r"\b[a-z][a-z0-9+.-]*://\S+", "", prose, flags=re.I)  # URLs
    return [match.group(0) for pattern in ISSUE_REFS for match in pattern.finditer(prose)]


def make_targets(text: str) -> set[str]:
    """The targets of each `make ...` command the README shows (variables such as PORT=8001 left out)."""
    targets = set()
    for line in shell_lines(text):
        for segment in SEGMENT_SPLIT.split(line):
            segment = ENV_ASSIGNMENTS.sub("", segment.strip())
            if segment.startswith("make "):
                words = re.split(r"\s#", segment)[0].split()[1:]
                targets.update(word for word in words if "=" not in word and not word.startswith("-"))
    return targets


def makefile_targets() -> set[str]:
    rules = re.findall(r"^([\w.-]+(?:[ \t]+[\w.-]+)*)[ \t]*:(?!=)", (REPO / "Makefile").read_text(), re.M)
    return {target for rule in rules for target in rule.split()}


def named_files(text: str) -> set[str]:
    """Image files and curl uploads the README's commands name by a path inside the repository."""
    found = set()
    for line in shell_lines(text):
        found.update(IMAGE_PATH.findall(line))
        found.update(path for path in UPLOAD.findall(line) if not path.startswith("$"))
    return found


# ---------------------------------------------------------------- the README itself

def test_readme_is_at_most_350_lines():
    lines = readme().count("\n") + (not readme().endswith("\n"))
    assert lines <= MAX_LINES, f"README.md has {lines} lines (at most {MAX_LINES}): move details into docs/"


def test_readme_has_no_issue_references_or_development_history():
    text = readme()
    assert issue_references(text) == [], "the README is for users: issue numbers belong in commits and docs/"
    assert HISTORY.findall(text) == [], "the README says what is, not what was tried: see docs/design.md"


def test_every_relative_link_and_image_exists():
    missing = []
    for target in relative_links(readme()):
        path, _, anchor = target.partition("#")
        file = (README.parent / path) if path else README
        if not file.exists():
            missing.append(target)
        elif anchor and file.suffix == ".md" and anchor not in heading_anchors(file.read_text(encoding="utf-8")):
            missing.append(f"{target} (no such heading)")
    assert missing == [], f"README.md links to what is not in the repository: {missing}"


def test_every_counterfeit_command_and_option_exists():
    commands = counterfeit_commands(readme())
    assert len(commands) >= 20, commands  # the extraction still finds the README's commands
    problems = [problem for args in commands for problem in command_problems(args)]
    assert problems == [], problems


def test_every_make_target_exists():
    targets = make_targets(readme())
    assert {"run", "test"} <= targets, targets
    assert targets - makefile_targets() == set(), "README.md names make targets the Makefile does not have"


def test_every_file_the_commands_name_exists():
    named = named_files(readme())
    assert "inference/demo/samples/counterfeit-1.jpg" in named  # the extraction still finds the first example
    missing = sorted(path for path in named if not (REPO / path).is_file())
    assert missing == [], f"README commands name files that are not in the repository: {missing}"


# ---------------------------------------------------------------- the checks can fail

@pytest.mark.parametrize("line, problem", [
    ("counterfeit screen inference/demo/samples --made-up-flag", "no option --made-up-flag"),
    ("counterfeit scren inference/demo/samples", "no such command"),
    ("counterfeit catalogue ad --product X --photos . --out x.onnx", "no such command"),
    ("counterfeit evidence", "needs a sub-command"),
    ("COUNTERFEIT_DATA_DIR=evidence .venv/bin/counterfeit evidence verify --heads h.jsonl", "no option --heads"),
    ("torchrun --nproc-per-node 2 -m counterfeit train DATA --out RUN --epoch 3", "no option --epoch"),
    ("id=$(counterfeit keys new --subject a --role admin --name b | head -1)", "no option --name"),
])
def test_the_command_check_catches_what_does_not_exist(line, problem):
    commands = counterfeit_commands(f"```bash\n{line}\n```\n")
    assert len(commands) == 1
    assert any(problem in found for found in command_problems(commands[0])), command_problems(commands[0])


def test_the_other_checks_catch_what_they_are_for():
    assert counterfeit_commands("`counterfeit serve: error: port 8000 is in use`") == []  # output, not a command
    assert issue_references("Fixed in #22; see issue 15 and [x](#2-step).") == ["#22", "issue 15"]
    assert issue_references("[docs](https://github.com/o/r/issues/22) and colour 0.5") == []
    assert relative_links('[a](docs/none.md) [b](https://x.org) [c](#top) <img src="docs/x.png">') == [
        "docs/none.md", "docs/x.png"]
    assert named_files('```bash\ncurl -F image=@photos/none.jpg -F images=@"$photo" http://h/v1\n```') == {
        "photos/none.jpg"}
    assert "the-api-one-photo" in heading_anchors("### The API: one photo\n")
    assert make_targets("`make run PORT=8001 HOST=127.0.0.1`, then `COUNTERFEIT_PORT=1 make lint`") == {"run", "lint"}
