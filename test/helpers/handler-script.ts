/**
 * A real shell script to use as every handler of a resource (`handlers { fence-peer
 * "/…/handler.sh fence-peer"; … }`), for end-to-end tests of when urbd calls its handlers.
 *
 * Each call of the script
 *   - dumps `env | grep -E '^(DRBD_|UP_TO_DATE)' | sort` into its own file (env.NAME.NODEID.PID),
 *   - then appends one line to calls.log: `$0 NAME NODEID BEHAVIOUR PID` (so a line in the
 *     log means its environment file is complete),
 *   - then exits with the code it was told, or hangs (`exec sleep 600`, the same PID).
 *
 * What it does is read at each call from a file the test writes (behave.NAME.NODEID, else
 * behave.NAME, else exit 0), so a test changes it between cases without restarting daemons.
 * Every node of a test runs the same script; DRBD_MY_NODE_ID tells the calls apart.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sleep } from './server.js';

export type Behaviour = number | 'hang';

export interface HandlerCall {
  /** The handler name the script was called for. */
  name: string;
  /** The calling node's name (DRBD_NODE_ID_<DRBD_MY_NODE_ID>). */
  node: string;
  /** What the script did: the exit code it used, or 'hang'. */
  behaviour: string;
  /** The script's PID ($$): with 'hang', the PID of the `sleep 600` it became. */
  pid: number;
  /** The DRBD_* and UP_TO_DATE_* variables of the call. */
  env: Record<string, string>;
}

export interface HandlerScript {
  readonly path: string;
  readonly dir: string;
  /** `handlers { }` statements that run the script for each handler named. */
  handlers(names: readonly string[]): string;
  /** What handler `name` does from its next call on, on every node or on one node-id. */
  set(name: string, behaviour: Behaviour, nodeId?: number): void;
  /** Every call logged since the last reset(), in log order. */
  calls(filter?: { name?: string; node?: string }): HandlerCall[];
  /** Forgets the calls so far (the log is emptied). */
  reset(): void;
  /** Polls until `pred` holds for the calls; throws with the calls seen after `timeoutMs`. */
  waitCalls(
    pred: (calls: HandlerCall[]) => boolean,
    what: string,
    timeoutMs?: number,
  ): Promise<HandlerCall[]>;
}

export function handlerScript(testDir: string): HandlerScript {
  const dir = path.join(testDir, 'handlers');
  const script = path.join(dir, 'handler.sh');
  const log = path.join(dir, 'calls.log');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    script,
    `#!/bin/sh
name="$1"
d='${dir}'
node="\${DRBD_MY_NODE_ID:-none}"
b=0
for f in "$d/behave.$name.$node" "$d/behave.$name"; do
  if [ -f "$f" ]; then b=$(cat "$f"); break; fi
done
[ -n "$b" ] || b=0
env | grep -E '^(DRBD_|UP_TO_DATE)' | sort > "$d/env.$name.$node.$$"
echo "$0 $name $node $b $$" >> "$d/calls.log"
if [ "$b" = hang ]; then exec sleep 600; fi
exit "$b"
`,
  );
  chmodSync(script, 0o755);
  writeFileSync(log, '');

  const parse = (): HandlerCall[] => {
    const text = existsSync(log) ? readFileSync(log, 'utf8') : '';
    const out: HandlerCall[] = [];
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      const [, name, nodeId, behaviour, pid] = line.split(' ');
      const envText = readFileSync(path.join(dir, `env.${name}.${nodeId}.${pid}`), 'utf8');
      const env: Record<string, string> = {};
      for (const l of envText.split('\n')) {
        const eq = l.indexOf('=');
        if (eq > 0) env[l.slice(0, eq)] = l.slice(eq + 1);
      }
      out.push({
        name: name!,
        node: env[`DRBD_NODE_ID_${nodeId}`] ?? `node-id ${nodeId}`,
        behaviour: behaviour!,
        pid: Number(pid),
        env,
      });
    }
    return out;
  };

  const hs: HandlerScript = {
    path: script,
    dir,
    handlers: (names) => names.map((n) => `${n} "${script} ${n}";`).join(' '),
    set(name, behaviour, nodeId) {
      const file = path.join(
        dir,
        nodeId === undefined ? `behave.${name}` : `behave.${name}.${nodeId}`,
      );
      // Written aside and renamed: a script reading it meanwhile sees the old or the new one.
      writeFileSync(`${file}.tmp`, String(behaviour));
      renameSync(`${file}.tmp`, file);
    },
    calls(filter = {}) {
      return parse().filter(
        (c) =>
          (filter.name === undefined || c.name === filter.name) &&
          (filter.node === undefined || c.node === filter.node),
      );
    },
    reset() {
      writeFileSync(log, '');
    },
    async waitCalls(pred, what, timeoutMs = 30000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const calls = parse();
        if (pred(calls)) return calls;
        if (Date.now() > until) {
          throw new Error(
            `handler calls: not ${what} after ${timeoutMs} ms: ${JSON.stringify(
              calls.map((c) => `${c.node}:${c.name}:${c.behaviour}`),
            )}`,
          );
        }
        await sleep(100);
      }
    },
  };
  return hs;
}
