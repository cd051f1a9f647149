#!/usr/bin/env node
// libuv sizes its thread pool on first use, and every disk read and write of the NBD path runs
// there: with the default 4 threads, a queue depth of 32 would be served 4 at a time. The
// pool must be sized before anything below is loaded.
process.env.UV_THREADPOOL_SIZE ??= '16';
await import('./urbd-main.js');
