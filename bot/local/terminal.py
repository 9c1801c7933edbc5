"""Slack messages as plain text: their blocks line by line, and mrkdwn the way Slack shows it.

:func:`render_thread` lays out a message and its replies; by default every text stays mrkdwn
source (for tests). ``paylink demo`` passes a :class:`SlackShows`, which turns mrkdwn into
what a reader sees in Slack: ``<@U…>`` as ``@name``, a ``<!date^…|fallback>`` as its
fallback, ``:emoji:`` as the character, ``*bold*`` without asterisks and ``<url|label>`` as
``label (url)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import emoji

if TYPE_CHECKING:
    from bot.local.standin import PostedMessage

Show = Callable[[str], str]

# Slack's angle-bracket tokens: mentions, special mentions, dates and links.
_TOKEN = re.compile(r"<([^<>\n]+)>")
# A bold span as Slack finds one: asterisks against the text, not inside a word.
_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")


def _source(text: str) -> str:
    return text


def _unescape(text: str) -> str:
    """Slack escapes only these three in mrkdwn."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class SlackShows:
    """mrkdwn → the text a reader sees in Slack.

    ``name_of`` gives a user's display name from their ID; URLs starting with
    ``gone_prefix`` (a sandbox that has stopped) are marked as no longer working.
    """

    def __init__(self, name_of: Callable[[str], str], *, gone_prefix: str | None = None):
        self.name_of = name_of
        self.gone_prefix = gone_prefix

    def __call__(self, text: str) -> str:
        # Tokens first, set aside behind placeholders: the emoji, bold and entity rules
        # apply to the text around them, never to a URL.
        tokens: list[str] = []

        def set_aside(match: re.Match[str]) -> str:
            tokens.append(self._token(match.group(1)))
            return f"\x00{len(tokens) - 1}\x00"

        text = _TOKEN.sub(set_aside, text)
        text = _BOLD.sub(r"\1", text)
        text = _unescape(emoji.emojize(text, language="alias"))
        return _PLACEHOLDER.sub(lambda m: tokens[int(m.group(1))], text)

    def _token(self, inner: str) -> str:
        target, _, label = inner.partition("|")
        label = _unescape(label)
        if target.startswith("@"):
            return "@" + (label or self.name_of(target[1:]))
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!date^"):
            return label
        if target.startswith("!subteam^"):
            return label or "@" + target.removeprefix("!subteam^")
        if target.startswith("!"):
            return "@" + target[1:]  # @here, @channel, @everyone
        url = _unescape(target)
        shown = f"{label} ({url})" if label else url
        if self.gone_prefix and url.startswith(self.gone_prefix):
            shown += " (gone: the demo has stopped)"
        return shown


def _text_of(obj: Any, show: Show) -> str:
    """A text object's text (``show`` applied when it is mrkdwn), or ''."""
    if isinstance(obj, dict):
        text = obj.get("text")
        if isinstance(text, dict):
            return _text_of(text, show)
        if not isinstance(text, str):
            return ""
        return show(text) if obj.get("type") == "mrkdwn" else text
    return obj if isinstance(obj, str) else ""


def _element(el: Any, show: Show) -> str:
    if not isinstance(el, dict):
        return ""
    kind = el.get("type")
    if kind in ("button", "workflow_button"):
        return f"[{_text_of(el.get('text'), show)}]"
    if kind == "image":
        return f"[image: {el.get('alt_text', '')}]"
    if kind == "overflow":
        return "[...]"
    placeholder = _text_of(el.get("placeholder"), show)
    initial = el.get("initial_option") or {}
    label = _text_of(initial.get("text"), show) if isinstance(initial, dict) else ""
    return f"[{label or placeholder or kind} v]"


def _rich_text(node: Any) -> str:
    if isinstance(node, dict):
        if node.get("type") == "text":
            return str(node.get("text", ""))
        if node.get("type") == "link":
            return str(node.get("text") or node.get("url", ""))
        if node.get("type") == "user":
            return f"<@{node.get('user_id', '')}>"
        return "".join(_rich_text(n) for n in node.get("elements", []))
    return ""


def _field(field: Any, show: Show) -> str:
    """A section field, ``Label: value`` on one line (Slack shows the label above it)."""
    return ": ".join(_text_of(field, show).split("\n", 1))


def block_lines(blocks: Iterable[Any], show: Show = _source) -> list[str]:
    """Lines of text for a list of blocks; buttons as ``[Label]``, fields one per line."""
    parts: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "header":
            parts.append(f"== {_text_of(block.get('text'), show)} ==")
        elif kind == "section":
            if block.get("text"):
                parts.append(_text_of(block["text"], show))
            parts += [_field(f, show) for f in block.get("fields") or []]
            if block.get("accessory"):
                parts.append(_element(block["accessory"], show))
        elif kind == "context":
            shown = [_text_of(e, show) or _element(e, show) for e in block.get("elements") or []]
            parts.append(" | ".join(p for p in shown if p))
        elif kind == "actions":
            parts.append(" ".join(_element(e, show) for e in block.get("elements") or []))
        elif kind == "divider":
            parts.append("-" * 40)
        elif kind == "image":
            parts.append(f"[image: {block.get('alt_text', '')}]")
        elif kind == "input":
            label = _text_of(block.get("label"), show)
            parts.append(f"{label}: {_element(block.get('element'), show)}")
        elif kind == "markdown":
            parts.append(str(block.get("text", "")))
        elif kind == "rich_text":
            parts.append(show(_rich_text(block)))
    # A text may hold several lines: each is a line of its own, so indenting reaches all.
    return [line for part in parts for line in part.splitlines()]


def render_thread(messages: Sequence[PostedMessage], show: Show = _source) -> str:
    """A message and its replies as text, each reply's lines indented under it."""
    lines: list[str] = []
    for i, msg in enumerate(messages):
        edited = f" (edited {msg.updated}x)" if msg.updated else ""
        body = block_lines(msg.blocks, show) if msg.blocks else []
        if not body:
            body = show(msg.text or "").splitlines() or [""]
        if i == 0:
            lines.append(f"#{msg.channel}{edited}")
            indent = "  "
        else:
            lines.append(f"  ↳ reply{edited}")
            indent = "      "
        lines += [f"{indent}{line}" if line.strip() else "" for line in body]
    return "\n".join(lines).rstrip() + "\n"
