import net from 'node:net';
import { randomInt } from 'node:crypto';

// Ports for daemons are picked below the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range starts at 32768), so a later
// listen(0) (a test proxy) or an outgoing connection can never be given a
// port that was picked here but not bound yet. A port is never handed out
// twice by one process, and each pick is checked bindable at that moment.
const LOW = 20000;
const HIGH = 32000;
const handedOut = new Set<number>();

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ host: '127.0.0.1', port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** A loopback port nobody listens on, for a daemon to bind later. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = randomInt(LOW, HIGH);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port found in ${LOW}-${HIGH} after 200 tries`);
}
