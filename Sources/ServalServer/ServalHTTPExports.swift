// JSON, SSE, API errors and the Prometheus text format live in ServalHTTP (shared with the
// gateway and the bench client); the server's routes and its clients keep seeing them here.
@_exported import ServalHTTP
