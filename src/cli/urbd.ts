#!/usr/bin/env node
// libuv sizes its thread pool on first use, and disk writes, large reads and reads that miss
// the page cache run there: with the default 4 threads a deep queue is served 4 at a time.
// 8 measured better than 16 on a 2-core machine (fewer threads fighting for the cores; see
// docs/performance.md); set UV_THREADPOOL_SIZE to change it. The pool must be sized before
// anything below is loaded.
process.env.UV_THREADPOOL_SIZE ??= '8';
await import('./urbd-main.js');
