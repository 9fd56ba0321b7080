"""Strict YAML files: parse, validate into pydantic models, and name the line of every error.

Config and menu files go through here. A model rejects unknown keys and wrong types; every
error comes back as one line, ``FILE:LINE: key.path: what is wrong``, so a technician can fix
the file without reading a stack trace.
"""

from __future__ import annotations

import logging
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every file model: unknown keys and loose types are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FileError(ValueError):
    """A file that cannot be used. ``errors`` holds one line per problem."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class _Locator:
    """Maps a pydantic error location to a line of the YAML source."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root

    def find(self, loc: Sequence[int | str]) -> tuple[int | None, list[str | int]]:
        """The 1-based line of ``loc`` and the part of ``loc`` that names real keys."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        path: list[str | int] = []
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                match = next(
                    ((k, v) for k, v in node.value if getattr(k, "value", None) == part), None
                )
                if match is None:
                    continue  # a union tag pydantic adds to the location, not a key
                key_node, node = match
                line = key_node.start_mark.line + 1
                path.append(part)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    break
                node = node.value[part]
                line = node.start_mark.line + 1
                path.append(part)
        return line, path


def _format_path(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc``, for listing its allowed keys."""
    current: Any = model
    for part in loc:
        current = _unwrap(current, part)
        if current is None:
            return None
    current = _unwrap(current, None)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any, part: int | str | None) -> Any:
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(get_args(annotation)[0], part)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in get_args(annotation) if m is not type(None)]
        for member in members:
            if isinstance(member, type) and issubclass(member, BaseModel):
                tag = member.model_fields.get("type")
                if (
                    tag is not None
                    and get_origin(tag.annotation) is Literal
                    and part in get_args(tag.annotation)
                ):
                    return member
        return _unwrap(members[0], part) if len(members) == 1 else None
    if origin in (list, tuple, Sequence) and isinstance(part, int):
        return get_args(annotation)[0]
    if origin is dict and part is not None:
        return get_args(annotation)[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if part is None:
            return annotation
        field = annotation.model_fields.get(str(part))
        return field.annotation if field is not None else None
    return None if part is not None else annotation


def _describe(error: Any, model: type[BaseModel]) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        allowed = f" (allowed: {', '.join(parent.model_fields)})" if parent else ""
        return f"unknown key{allowed}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        ctx = error["ctx"]
        return f"unknown type {ctx['tag']!r} (known: {ctx['expected_tags']})"
    message = str(error["msg"])
    if "input" in error and kind not in ("union_tag_invalid", "union_tag_not_found"):
        shown = repr(error["input"])
        if len(shown) > 40:
            shown = shown[:37] + "..."
        message = f"{message} (got {shown})"
    return message


def parse_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Parse YAML text into plain data and its node tree (for line numbers).

    Raises:
        FileError: a syntax error, with its line and column.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FileError([f"{where}: YAML syntax error: {problem}"]) from None
    return data, node


def validate(model: type[ModelT], data: Any, node: yaml.Node | None, source: str) -> ModelT:
    """Validate parsed YAML into ``model``; errors name the file, line and key.

    Raises:
        FileError: one line per problem found.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FileError(
            [f"{source}:1: the file must hold a mapping of keys, not a {type(data).__name__}"]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        locator = _Locator(node)
        lines = []
        for error in exc.errors():
            loc = list(error["loc"])
            if error["type"] == "union_tag_invalid":
                loc.append(error["ctx"]["discriminator"].strip("'"))
            line, path = locator.find(loc)
            if error["type"] in ("extra_forbidden", "missing") and loc and loc[-1] not in path:
                path.append(loc[-1])
            where = f"{source}:{line}" if line is not None else source
            lines.append(f"{where}: {_format_path(path)}: {_describe(error, model)}")
        raise FileError(lines) from None


def load_yaml_model(model: type[ModelT], path: Path) -> ModelT:
    """Read ``path`` and validate it into ``model``.

    Raises:
        FileError: missing or unreadable file, YAML syntax error, or invalid content.
    """
    if not path.exists():
        raise FileError([f"{path}: file does not exist"])
    if not path.is_file():
        raise FileError([f"{path}: not a file"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileError([f"{path}: cannot read: {exc}"]) from None
    data, node = parse_yaml(text, str(path))
    return validate(model, data, node, str(path))


def locate(path: Path, key_path: Sequence[int | str]) -> str:
    """``FILE:LINE`` of a key in a YAML file, for errors found after validation."""
    try:
        _, node = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    except (OSError, FileError):
        return str(path)
    line, _ = _Locator(node).find(key_path)
    return f"{path}:{line}" if line is not None else str(path)
