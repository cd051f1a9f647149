/**
 * libnbd driven from Python (Debian's python3-libnbd), for what its command-line tools cannot
 * do: strict mode off, so that it sends what the server must refuse, and a look at the handle
 * afterwards. The script's `out` dict comes back as JSON.
 */
import { run, showRun } from './server.js';

/** One libnbd call's outcome: `errno` is libnbd's name for the error (EPERM, EINVAL, ...). */
export interface Outcome {
  ok: boolean;
  errno?: string;
  message?: string;
}

// `attempt(f)` runs one call and records how it went instead of raising; `alive(h)` is a 4 KiB
// read that proves the handle still talks to the server after a refusal.
const PRELUDE = `
import errno, json, sys, nbd
out = {}
def attempt(f):
    try:
        f()
        return {"ok": True}
    except nbd.Error as e:
        # libnbd gives the errno's name; a number is turned into one all the same
        name = e.errno if not isinstance(e.errno, int) else errno.errorcode.get(e.errno)
        return {"ok": False, "errno": name, "message": e.string}
def alive(h):
    return attempt(lambda: h.pread(4096, 0))
def handle(uri, strict=False, block_sizes=True, structured=True):
    h = nbd.NBD()
    if not strict:
        h.set_strict_mode(0)
    h.set_request_block_size(block_sizes)
    h.set_request_structured_replies(structured)
    h.connect_uri(uri)
    return h
`;

/**
 * Runs `body` (Python, with `uri = sys.argv[1]`, the helpers above, and an `out` dict to fill)
 * and returns `out`. Fails with the script's output when Python does not exit 0.
 */
export async function libnbd<T = Record<string, unknown>>(
  uri: string,
  body: string,
  timeoutMs = 60000,
): Promise<T> {
  const script = `${PRELUDE}\nuri = sys.argv[1]\n${body}\nprint(json.dumps(out))\n`;
  // The system python: a python earlier on PATH may lack the nbd module.
  const r = await run('/usr/bin/python3', ['-c', script, uri], { timeoutMs });
  if (r.code !== 0) throw new Error(`libnbd script failed\n${showRun(r)}`);
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  return JSON.parse(last) as T;
}
