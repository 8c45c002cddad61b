"""`${name}` placeholder rendering that can never silently default."""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
VALID_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TemplateError(ValueError):
    """A template could not be rendered completely."""


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def render(text: str, values: dict[str, str], source: str = "<template>") -> str:
    """Fill every `${name}`; any name without a value is an error naming the file."""
    names = placeholders(text)
    malformed = sorted(n for n in names if not VALID_NAME.match(n))
    if malformed:
        raise TemplateError(f"{source}: malformed placeholder(s) {['${' + n + '}' for n in malformed]}")
    missing = sorted(names - set(values))
    if missing:
        raise TemplateError(
            f"{source}: unfilled placeholder(s) {['${' + n + '}' for n in missing]}; "
            f"known values: {sorted(values)}"
        )
    rendered = PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)
    if "${" in rendered:
        raise TemplateError(f"{source}: a value introduced a new placeholder")
    return rendered
