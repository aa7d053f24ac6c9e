/// Placeholder module file; the bench-serving client lives in this target.
enum BenchModule {}
