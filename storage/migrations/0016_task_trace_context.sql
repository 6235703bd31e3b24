-- The W3C trace context (a traceparent header value) of the request that queued the task, so the worker's spans
-- continue the request's trace. NULL when tracing was off at enqueue time.
ALTER TABLE tasks ADD COLUMN trace_context text;
