"""Every domain's tables, imported together so the metadata (and Alembic) sees the whole schema."""

from seawall.auth import models as auth_models
from seawall.db import Base

__all__ = ["Base", "auth_models"]
