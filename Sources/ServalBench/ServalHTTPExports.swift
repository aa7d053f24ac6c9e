// The SSE parser (and JSON) live in ServalHTTP, shared with the server and the gateway.
@_exported import ServalHTTP
