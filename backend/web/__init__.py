"""The clinician and citizen web app: server-rendered Jinja2 pages, live parts over
server-sent events, trends drawn with the vendored uPlot (static/vendor/uplot)."""
