"""MkDocs hooks of the documentation site (``hooks:`` in ``mkdocs.yml``).

- **Math without the network.** ``pymdownx.arithmatex`` (generic mode) wraps ``$...$`` and
  ``$$...$$`` in ``<span class="arithmatex">\\(...\\)</span>`` and
  ``<div class="arithmatex">\\[...\\]</div>``; :func:`on_page_content` turns each into MathML
  with ``latex2mathml`` while the site is built. Browsers draw MathML themselves, so a page
  needs no script, no font download and no network to show its formulas.
- **The command line's help, as the command prints it.** A line
  ``<!-- samplegrad-help: train vae -->`` in a page becomes a code block holding the output of
  ``python -m samplegrad train vae --help``, run when the site is built: the CLI page cannot
  drift from the command.
- **Every registered estimator class.** A line ``<!-- samplegrad-estimators -->`` becomes a
  reference entry (``::: samplegrad.ReinMax``) for each class of the estimator catalog, in its
  order: registering an estimator documents it.
- **reST-flavoured docstrings.** The docstrings cite names the Sphinx way
  (``:func:`samplegrad.expectation```) and end a paragraph with ``::`` before a literal block.
  The roles become cross-references (left as code where the name has no page) and ``::``
  becomes ``:``.
"""

from __future__ import annotations

import functools
import html
import os
import re
import subprocess
import sys
from typing import Any

from latex2mathml.converter import convert

_MATH = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*\\[(\[](?P<tex>.*?)\\[)\]]\s*</(?P=tag)>',
    re.DOTALL,
)
_HELP = re.compile(r"^<!-- samplegrad-help: (?P<args>[a-z ]*) -->$", re.MULTILINE)
_ESTIMATORS = re.compile(r"^<!-- samplegrad-estimators -->$", re.MULTILINE)
_ROLE = re.compile(r":(?:func|mod|class|meth|attr|data|exc|obj):<code>~?(?P<name>[\w.]+)</code>")
_DOUBLE_COLON = re.compile(r"::</p>")


def _mathml(match: re.Match[str]) -> str:
    display = "block" if match["tag"] == "div" else "inline"
    return convert(html.unescape(match["tex"]).strip(), display=display)


def _reference(match: re.Match[str]) -> str:
    name = match["name"]
    return f'<autoref identifier="{name}" optional><code>{name}</code></autoref>'


@functools.cache
def command_help(args: str) -> str:
    """``samplegrad ARGS --help`` as the installed command prints it, 100 columns wide."""
    environment = {**os.environ, "COLUMNS": "100", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "samplegrad", *args.split(), "--help"]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`samplegrad {args} --help` failed:\n{done.stderr}")
    return done.stdout.rstrip()


def estimator_entries() -> str:
    """A reference entry per estimator class of the catalog, in its order."""
    from samplegrad.estimators import catalog

    classes = dict.fromkeys(entry.cls.__name__ for entry in catalog.CATALOG.values())
    return "\n\n".join(f"::: samplegrad.{name}" for name in classes)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    markdown = _ESTIMATORS.sub(lambda _: estimator_entries(), markdown)
    return _HELP.sub(lambda m: f"```text\n{command_help(m['args'].strip())}\n```", markdown)


def on_page_content(html_text: str, **kwargs: Any) -> str:
    html_text = _MATH.sub(_mathml, html_text)
    html_text = _ROLE.sub(_reference, html_text)
    return _DOUBLE_COLON.sub(":</p>", html_text)
