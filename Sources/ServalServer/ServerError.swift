/// Placeholder module file; the HTTP server lives in this target.
enum ServerModule {}
