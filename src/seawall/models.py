"""Every domain's tables, imported together so the metadata (and Alembic) sees the whole schema."""

from seawall.auth import models as auth_models
from seawall.db import Base
from seawall.lists import models as lists_models

__all__ = ["Base", "auth_models", "lists_models"]
