/**
 * The disk's part of a 1 % bitmap resync, alone: about 300 runs of 4–64 KiB (1 % of the file,
 * the shape `scripts/bench/run pair`'s fio leaves dirty) written in offset order into a file,
 * then one fdatasync. That is the least a SyncTarget must do before it may clear its bits, so
 * it is the floor under the bitmap resync's time on this machine (docs/performance.md).
 *
 *   node dist/scripts/bench/scattered-write.js FILE [--repeat N] [--percent P]
 *
 * FILE is overwritten in place (use a scratch copy, e.g. the bench's beta.img).
 */
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    repeat: { type: 'string', default: '3' },
    percent: { type: 'string', default: '1' },
  },
});
const file = positionals[0];
if (file === undefined) {
  console.error('usage: scattered-write FILE [--repeat N] [--percent P]');
  process.exit(2);
}
const size = fs.statSync(file).size;
const want = Math.floor((size * Number(values.percent)) / 100);
const payload = randomBytes(64 << 10);
const fd = fs.openSync(file, 'r+');
try {
  for (let i = 0; i < Number(values.repeat); i++) {
    const runs: Array<[number, number]> = [];
    for (let total = 0; total < want;) {
      const n = 4096 * (1 + Math.floor(Math.random() * 16));
      runs.push([Math.floor(Math.random() * ((size - n) / 4096)) * 4096, n]);
      total += n;
    }
    runs.sort((a, b) => a[0] - b[0]);
    const t0 = performance.now();
    for (const [off, n] of runs) fs.writeSync(fd, payload, 0, n, off);
    const t1 = performance.now();
    fs.fdatasyncSync(fd);
    const t2 = performance.now();
    const mib = runs.reduce((s, [, n]) => s + n, 0) / 1048576;
    console.log(
      `${runs.length} runs, ${mib.toFixed(1)} MiB: pwrite ${(t1 - t0).toFixed(1)} ms, ` +
        `fdatasync ${(t2 - t1).toFixed(1)} ms, together ${(t2 - t0).toFixed(1)} ms`,
    );
  }
} finally {
  fs.closeSync(fd);
}
