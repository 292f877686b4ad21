"""Statistics and trends: the figures hotlines publish (pages, images, reports, notices and takedown
time, self-reports, platform matches) by period and dimension, their charts and the annual report."""
