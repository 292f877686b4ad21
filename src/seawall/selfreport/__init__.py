"""The child's self-report: hashes computed in the young person's browser, a case in the hotline's
queues, entries in the ``self-report`` hash list, a status page and a withdrawal by case number and
PIN. The picture itself never reaches the server."""
