// Child process for the store tests: `open FILE rw|ro` prints the outcome as JSON;
// `hold FILE rw|ro [unclean]` opens the store, prints "ready" and keeps it open until stdin ends.
import { MetaError, MetaStore } from '../../src/meta/store.js';

const [verb, file, mode, extra] = process.argv.slice(2);
if (verb === undefined || file === undefined) throw new Error('usage: open|hold FILE rw|ro');
const readOnly = mode === 'ro';

if (verb === 'open') {
  try {
    MetaStore.open(file, { readOnly, busyTimeoutMs: 0 }).close();
    process.stdout.write(JSON.stringify({ ok: true }));
  } catch (err) {
    if (!(err instanceof MetaError)) throw err;
    process.stdout.write(JSON.stringify({ ok: false, code: err.code, message: err.message }));
  }
} else {
  let store: MetaStore;
  try {
    store = MetaStore.open(file, { readOnly });
    if (extra === 'unclean') store.markUnclean();
  } catch (err) {
    process.stdout.write(`error ${String(err)}\n`);
    process.exit(1);
  }
  process.stdout.write('ready\n');
  process.stdin.resume();
  process.stdin.on('end', () => {
    store.close();
    process.exit(0);
  });
}
