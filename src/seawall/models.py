"""Every domain's tables, imported together so the metadata (and Alembic) sees the whole schema."""

from seawall.auth import models as auth_models
from seawall.db import Base
from seawall.evidence import models as evidence_models
from seawall.hotline import models as hotline_models
from seawall.lists import models as lists_models
from seawall.lists.exchanges import models as exchanges_models
from seawall.matching import models as matching_models
from seawall.reporting import models as reporting_models
from seawall.review import models as review_models
from seawall.scan import models as scan_models
from seawall.stats import models as stats_models

__all__ = [
    "Base",
    "auth_models",
    "evidence_models",
    "exchanges_models",
    "hotline_models",
    "lists_models",
    "matching_models",
    "reporting_models",
    "review_models",
    "scan_models",
    "stats_models",
]
