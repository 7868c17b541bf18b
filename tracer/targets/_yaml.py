"""The small YAML subset LXD writes (`lxc config show`, `backup.yaml`), without a YAML dependency.

LXD's YAML comes from go-yaml: block mappings and sequences, plain, single- and double-quoted
scalars (numbers-as-strings quoted, `'[{"Isuid":true,...}]'` JSON in single quotes), block scalars
for cloud-init user data (`user.user-data: |`), empty flow collections (`devices: {}`,
`snapshots: []`). That is what this parser reads; anchors, aliases, tags and multi-document
streams are refused with a TargetError, as is anything malformed. Plain scalars stay strings
except `true`/`false`, `null`/`~` and plain integers, so an unquoted MAC such as
`00:16:30:12:34:56` (which a YAML 1.1 parser would read as a base-60 integer) stays a MAC.
"""

from __future__ import annotations

import re
from typing import Any

from tracer.errors import TargetError

_INT_RE = re.compile(r"^[-+]?[0-9]+$")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_WS = " \t"
"""YAML's white space: only spaces and tabs (str.strip() would also eat a no-break space)."""
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_NULLS = {"", "~", "null", "Null", "NULL"}
MAX_DEPTH = 64

_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
            "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0",
            "L": "\u2028", "P": "\u2029"}


def parse_yaml(text: str, *, origin: str = "YAML") -> Any:
    """The document's value (dict, list, str, int, bool or None); TargetError when it is not YAML
    this parser reads."""
    if not isinstance(text, str):
        raise TargetError(f"{origin}: expected text")
    return _Parser(text, origin).document()


class _Parser:
    def __init__(self, text: str, origin: str) -> None:
        self.origin = origin
        self.raw = _LINE_BREAK.split(text)
        if self.raw and self.raw[-1] == "":
            self.raw.pop()
        self.pos = 0
        self.depth = 0
        self.started = False

    # -- lines
    def error(self, index: int, message: str) -> TargetError:
        return TargetError(f"{self.origin}: line {index + 1}: {message}")

    def skip(self) -> None:
        while self.pos < len(self.raw):
            stripped = self.raw[self.pos].strip(_WS)
            if stripped == "" or stripped.startswith("#"):
                self.pos += 1
                continue
            break

    def peek(self) -> tuple[int, str] | None:
        self.skip()
        if self.pos >= len(self.raw):
            return None
        line = self.raw[self.pos]
        content = line.lstrip(" ")
        indent = len(line) - len(content)
        if content.startswith("\t"):
            raise self.error(self.pos, "tab in indentation")
        content = content.rstrip(_WS)
        if indent == 0 and (content in ("---", "...") or content.startswith("--- ")):
            if content == "..." and self.started:
                return None
            if content != "---" or self.started:
                raise self.error(self.pos, "only one plain YAML document is supported")
            self.pos += 1
            self.started = True
            return self.peek()
        if content.startswith("%"):
            raise self.error(self.pos, "YAML directives are not supported")
        self.started = True
        return indent, content

    # -- structure
    def document(self) -> Any:
        first = self.peek()
        if first is None:
            return None
        value = self.node(first[0])
        rest = self.peek()
        if rest is not None:
            raise self.error(self.pos, f"unexpected content {rest[1][:40]!r}")
        return value

    def node(self, indent: int) -> Any:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(self.pos, f"nested deeper than {MAX_DEPTH} levels")
        try:
            peeked = self.peek()
            if peeked is None:
                return None
            _, content = peeked
            if _is_item(content):
                return self.sequence(indent)
            if self.split_key(content, self.pos) is not None:
                return self.mapping(indent)
            index = self.pos
            self.pos += 1
            return self.inline(content, indent - 1, index)
        finally:
            self.depth -= 1

    def mapping(self, indent: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while (peeked := self.peek()) is not None:
            ind, content = peeked
            if ind < indent:
                break
            if ind > indent:
                raise self.error(self.pos, "bad indentation of a mapping entry")
            split = self.split_key(content, self.pos)
            if split is None:
                if _is_item(content):
                    raise self.error(self.pos, "a sequence item where a mapping key was expected")
                raise self.error(self.pos, f"expected 'key: value', found {content[:40]!r}")
            key, rest = split
            index = self.pos
            self.pos += 1
            result[key] = self.value(rest, indent, index, in_mapping=True)
        return result

    def sequence(self, indent: int) -> list[Any]:
        items: list[Any] = []
        while (peeked := self.peek()) is not None:
            ind, content = peeked
            if ind < indent or (ind == indent and not _is_item(content)):
                break
            if ind > indent:
                raise self.error(self.pos, "bad indentation of a sequence item")
            index = self.pos
            rest = content[1:]
            stripped = rest.lstrip(" ")
            if stripped == "" or stripped.startswith("#"):
                self.pos += 1
                items.append(self.value("", indent, index, in_mapping=False))
                continue
            inner = indent + 1 + len(rest) - len(stripped)
            if _is_item(stripped) or self.split_key(stripped, index) is not None:
                self.raw[self.pos] = " " * inner + stripped
                items.append(self.node(inner))
            else:
                self.pos += 1
                items.append(self.value(stripped, indent, index, in_mapping=False))
        return items

    def value(self, rest: str, parent: int, index: int, *, in_mapping: bool) -> Any:
        text = rest.strip(_WS)
        if text == "" or text.startswith("#"):
            peeked = self.peek()
            if peeked is None:
                return None
            ind, content = peeked
            if ind > parent:
                return self.node(ind)
            if in_mapping and ind == parent and _is_item(content):
                return self.node(ind)
            return None
        return self.inline(text, parent, index)

    def inline(self, text: str, parent: int, index: int) -> Any:
        first = text[0]
        if first in "&*!":
            raise self.error(index, "YAML anchors, aliases and tags are not supported")
        if first in "|>":
            return self.block_scalar(text, parent, index)
        if first in "\"'":
            return self.quoted(text, parent, index)
        if first in "[{":
            return self.flow(text, parent, index)
        if first in "@`":
            raise self.error(index, f"a plain scalar cannot start with {first!r}")
        return _plain(self.plain(_strip_comment(text), parent, index))

    # -- scalars
    def plain(self, text: str, parent: int, index: int) -> str:
        parts = [text]
        while self.pos < len(self.raw):
            line = self.raw[self.pos]
            content = line.lstrip(" ")
            if content.strip(_WS) == "":
                break
            indent = len(line) - len(content)
            if indent <= parent or content.startswith("#"):
                break
            if indent == 0 and (content.rstrip(_WS) in ("---", "...") or content.startswith("--- ")):
                break
            if _is_item(content.rstrip(_WS)) or self.split_key(content.rstrip(_WS), self.pos) is not None:
                raise self.error(self.pos, "mapping or sequence inside a plain scalar")
            parts.append(_strip_comment(content.strip(_WS)))
            self.pos += 1
        return " ".join(p for p in parts if p)

    def quoted(self, text: str, parent: int, index: int) -> str:
        quote = text[0]
        buffer = text[1:]
        pieces: list[str] = []
        line_index = index
        while True:
            end = _closing_quote(buffer, quote)
            if end is not None:
                pieces.append(buffer[:end])
                tail = buffer[end + 1:].strip(_WS)
                if tail and not tail.startswith("#"):
                    raise self.error(line_index, f"text after a quoted scalar: {tail[:30]!r}")
                break
            pieces.append(buffer)
            if self.pos >= len(self.raw):
                raise self.error(index, "unterminated quoted scalar")
            line_index = self.pos
            buffer = self.raw[self.pos].strip(_WS)
            self.pos += 1
        return _unquote(pieces, quote, lambda msg: self.error(index, msg))

    def block_scalar(self, header: str, parent: int, index: int) -> str:
        style = header[0]
        spec = _strip_comment(header[1:]).strip(_WS)
        chomp = "clip"
        explicit = None
        for ch in spec:
            if ch in "+-" and chomp == "clip":
                chomp = "keep" if ch == "+" else "strip"
            elif ch.isdigit() and ch != "0" and explicit is None:
                explicit = int(ch)
            else:
                raise self.error(index, f"bad block scalar header {header!r}")
        base = max(parent, 0) + explicit if explicit else None
        lines: list[str] = []
        while self.pos < len(self.raw):
            line = self.raw[self.pos]
            if line.strip(_WS) == "":
                lines.append("")
                self.pos += 1
                continue
            indent = len(line) - len(line.lstrip(" "))
            if base is None:
                if indent <= parent:
                    break
                base = indent
            if indent < base:
                if indent > parent and line.strip(_WS) and not lines:
                    raise self.error(self.pos, "bad indentation in a block scalar")
                break
            lines.append(line[base:])
            self.pos += 1
        trailing = 0
        while lines and lines[-1] == "":
            lines.pop()
            trailing += 1
        if style == "|":
            body = "\n".join(lines)
        else:
            body = _fold(lines)
        if not lines:
            return "\n" * trailing if chomp == "keep" else ""
        if chomp == "strip":
            return body
        if chomp == "keep":
            return body + "\n" * (trailing + 1)
        return body + "\n"

    def flow(self, text: str, parent: int, index: int) -> Any:
        buffer = _strip_flow_comment(text)
        while _flow_open(buffer):
            if self.pos >= len(self.raw):
                raise self.error(index, "unterminated flow collection")
            buffer += " " + _strip_flow_comment(self.raw[self.pos].strip(_WS))
            self.pos += 1
        value, end = _FlowParser(buffer, lambda msg: self.error(index, msg)).parse(0)
        if buffer[end:].strip(_WS):
            raise self.error(index, f"text after a flow collection: {buffer[end:].strip(_WS)[:30]!r}")
        return value

    # -- keys
    def split_key(self, content: str, index: int) -> tuple[str, str] | None:
        if not content:
            return None
        if content[0] in "\"'":
            end = _closing_quote(content[1:], content[0])
            if end is None:
                return None
            after = content[end + 2:].lstrip(" ")
            if after.startswith(":") and (len(after) == 1 or after[1] in " \t"):
                key = _unquote([content[1:end + 1]], content[0], lambda msg: self.error(index, msg))
                return key, after[1:]
            return None
        if content[0] in "[{&*!|>%@`#-?" and not (content[0] == "-" and not _is_item(content)):
            return None
        for i, ch in enumerate(content):
            if ch == "#" and i > 0 and content[i - 1] in " \t":
                return None
            if ch == ":" and (i + 1 == len(content) or content[i + 1] in " \t"):
                key = content[:i].rstrip(_WS)
                if not key:
                    return None
                return key, content[i + 1:]
        return None


def _is_item(content: str) -> bool:
    return content == "-" or content.startswith("- ") or content.startswith("-\t")


def _strip_comment(text: str) -> str:
    for i, ch in enumerate(text):
        if ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip(_WS)
    return text.rstrip(_WS)


def _flow_scan(text: str) -> tuple[int, bool, int | None]:
    """(bracket depth, inside a quoted scalar, index of a comment) of flow text.

    A quote opens a quoted scalar only where a flow node starts (after `[`, `{`, `,`, `:` or at the
    beginning); elsewhere it is part of a plain scalar such as `it's`.
    """
    depth = 0
    quote = None
    escaped = False
    node_start = True
    skip = False
    for i, ch in enumerate(text):
        if skip:
            skip = False
            continue
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':
                escaped = True
            elif ch == quote == "'" and text[i + 1:i + 2] == "'":
                skip = True
            elif ch == quote:
                quote = None
            continue
        if ch in " \t":
            continue
        if ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return depth, False, i
        if ch in "\"'" and node_start:
            quote = ch
            node_start = False
            continue
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        node_start = ch in "[{,:"
    return depth, quote is not None, None


def _strip_flow_comment(text: str) -> str:
    cut = _flow_scan(text)[2]
    return text if cut is None else text[:cut].rstrip(_WS)


def _flow_open(text: str) -> bool:
    depth, quoted, _ = _flow_scan(text)
    return depth > 0 or quoted


def _closing_quote(text: str, quote: str) -> int | None:
    i = 0
    while i < len(text):
        ch = text[i]
        if quote == '"' and ch == "\\":
            i += 2
            continue
        if ch == quote:
            if quote == "'" and i + 1 < len(text) and text[i + 1] == "'":
                i += 2
                continue
            return i
        i += 1
    return None


def _unquote(pieces: list[str], quote: str, error: Any) -> str:
    """Join the lines of a quoted scalar (YAML line folding) and resolve its escapes.

    A line break between two lines becomes a space, N empty lines between them become N newlines,
    and in double quotes a backslash at the end of a line joins the lines directly.
    """
    if len(pieces) == 1:
        return _unescape(pieces[0], error) if quote == '"' else pieces[0].replace("''", "'")
    last = len(pieces) - 1
    lines = [pieces[0].rstrip(" \t")] + [p.strip(" \t") for p in pieces[1:last]] + [pieces[last].lstrip(" \t")]
    result = ""
    empties = 0
    direct = False
    for j, line in enumerate(lines):
        if 0 < j < last and line == "":
            empties += 1
            continue
        text = line
        escaped_break = quote == '"' and j < last and _odd_backslashes(text)
        if escaped_break:
            text = text[:-1]
        if j > 0:
            result += "" if direct else ("\n" * empties if empties else " ")
        result += _unescape(text, error) if quote == '"' else text.replace("''", "'")
        empties = 0
        direct = escaped_break
    return result


def _odd_backslashes(text: str) -> bool:
    count = len(text) - len(text.rstrip("\\"))
    return count % 2 == 1


def _unescape(text: str, error: Any) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(text):
            i += 1  # a trailing backslash escapes the line break
            continue
        code = text[i + 1]
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
            continue
        width = {"x": 2, "u": 4, "U": 8}.get(code)
        if width is None:
            raise error(f"unknown escape \\{code} in a double-quoted scalar")
        digits = text[i + 2:i + 2 + width]
        if len(digits) != width or not re.fullmatch(r"[0-9a-fA-F]+", digits):
            raise error(f"bad escape \\{code}{digits}")
        value = int(digits, 16)
        if value > 0x10FFFF:
            raise error(f"escape \\{code}{digits} is not a character")
        out.append(chr(value))
        i += 2 + width
    return "".join(out)


def _fold(lines: list[str]) -> str:
    """Folded block scalar: single line breaks between text lines become spaces."""
    out = ""
    previous_text = False
    for line in lines:
        more_indented = line.startswith((" ", "\t"))
        if line == "":
            out += "\n"
            previous_text = False
            continue
        if previous_text and not more_indented:
            out += " " + line
        else:
            if out and not out.endswith("\n"):
                out += "\n"
            out += line
        previous_text = not more_indented
    return out


def _plain(text: str) -> Any:
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if _INT_RE.match(text) and len(text) < 40:
        return int(text)
    return text


class _FlowParser:
    def __init__(self, text: str, error: Any) -> None:
        self.text = text
        self.error = error

    def ws(self, i: int) -> int:
        while i < len(self.text) and self.text[i] in " \t":
            i += 1
        return i

    def parse(self, i: int, depth: int = 0) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise self.error("flow collection nested too deep")
        i = self.ws(i)
        if i >= len(self.text):
            raise self.error("unexpected end of a flow collection")
        ch = self.text[i]
        if ch == "[":
            return self.seq(i + 1, depth)
        if ch == "{":
            return self.map(i + 1, depth)
        return self.scalar(i)

    def seq(self, i: int, depth: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        i = self.ws(i)
        if i < len(self.text) and self.text[i] == "]":
            return items, i + 1
        while True:
            value, i = self.parse(i, depth + 1)
            items.append(value)
            i = self.ws(i)
            if i < len(self.text) and self.text[i] == ",":
                i = self.ws(i + 1)
                if i < len(self.text) and self.text[i] == "]":
                    return items, i + 1
                continue
            if i < len(self.text) and self.text[i] == "]":
                return items, i + 1
            raise self.error("expected ',' or ']' in a flow sequence")

    def map(self, i: int, depth: int) -> tuple[dict[str, Any], int]:
        result: dict[str, Any] = {}
        i = self.ws(i)
        if i < len(self.text) and self.text[i] == "}":
            return result, i + 1
        while True:
            key, i = self.parse(i, depth + 1)
            if isinstance(key, (dict, list)):
                raise self.error("a collection as a flow mapping key")
            i = self.ws(i)
            value: Any = None
            if i < len(self.text) and self.text[i] == ":":
                value, i = self.parse(i + 1, depth + 1)
                i = self.ws(i)
            result["" if key is None else str(key)] = value
            if i < len(self.text) and self.text[i] == ",":
                i = self.ws(i + 1)
                if i < len(self.text) and self.text[i] == "}":
                    return result, i + 1
                continue
            if i < len(self.text) and self.text[i] == "}":
                return result, i + 1
            raise self.error("expected ',' or '}' in a flow mapping")

    def scalar(self, i: int) -> tuple[Any, int]:
        ch = self.text[i]
        if ch in "\"'":
            end = _closing_quote(self.text[i + 1:], ch)
            if end is None:
                raise self.error("unterminated quoted scalar")
            return _unquote([self.text[i + 1:i + 1 + end]], ch, self.error), i + end + 2
        if ch in "&*!|>@`":
            raise self.error(f"unsupported {ch!r} in a flow collection")
        start = i
        while i < len(self.text):
            c = self.text[i]
            if c in ",[]{}":
                break
            if c == ":" and (i + 1 == len(self.text) or self.text[i + 1] in " \t,]}"):
                break
            i += 1
        return _plain(self.text[start:i].strip(_WS)), i
