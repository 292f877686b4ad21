"""Authority reports (NCMEC's CyberTipline, the UK NCA), their submission, retention and legal hold."""
