"""Background work of the hotline: capturing reported pages."""

from __future__ import annotations

import logging

from seawall.tasks import huey

log = logging.getLogger(__name__)


@huey.task(name="hotline.capture")
def capture_case(case_id: int) -> None:
    log.info("capture of case %s queued (capture not built yet)", case_id)
