"""Category names: the catalog's category ids (an offer's `category_path`) as people read them.

Offers carry ids only (1688's are numbers), and the TMAPI answer's `cat_id` stays an id, so the
names come from a JSON file beside the catalog, such as luma's categories.json:
``{"1029": {"name": "Bras & Tanks", "path": "Women/Tops/Bras & Tanks"}}``, or simply ``{"1029": "Bras & Tanks"}``.
The search page shows them on its category chip (GET /categories/{cat_id}).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, TypeAdapter, ValidationError


class CategoryName(BaseModel):
    name: str
    path: str = ""  # the names from the top level down, as the file writes them; left out: the name alone


_FILE = TypeAdapter(dict[str, CategoryName | str])


def _with_path(value: CategoryName | str) -> CategoryName:
    """A bare name, or a name without a path: the path is the name alone (the chip's tooltip)."""
    if isinstance(value, str):
        return CategoryName(name=value, path=value)
    return value if value.path else CategoryName(name=value.name, path=value.name)


class CategoryNames:
    def __init__(self, names: dict[str, CategoryName] | None = None) -> None:
        self._names = names or {}

    @classmethod
    def load(cls, path: Path) -> CategoryNames:
        """Read a names file; a missing or malformed one raises ValueError naming the file."""
        try:
            raw = _FILE.validate_json(path.read_bytes())
        except (OSError, ValidationError) as exc:
            raise ValueError(f"categories file {path}: {exc}") from exc
        return cls({cat_id: _with_path(v) for cat_id, v in raw.items()})

    @classmethod
    def of(cls, file: str) -> CategoryNames:
        """The `categories` setting's file, or no names (the page shows ids) when it is empty."""
        return cls.load(Path(file)) if file else cls()

    def get(self, cat_id: str) -> CategoryName | None:
        return self._names.get(cat_id)
