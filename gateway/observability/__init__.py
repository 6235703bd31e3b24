"""Metrics (Prometheus, multi-process) and traces (OpenTelemetry, off unless OTEL_* asks for them).

``metrics`` defines what is counted; ``multiproc`` prepares the directory the processes of one machine share
values in (it must run before ``prometheus_client`` is first imported); ``scrape`` computes the gauges read from
PostgreSQL at scrape time; ``exposition`` renders them (``endpoint`` serves that on the API port, for a token);
``operations`` names GraphQL requests; ``tracing`` makes spans; ``process`` sets a process up and tears it down.
"""
