/**
 * RabbitMQ survives the Primary's death (issue 10's end-to-end test): a real broker from
 * Debian's rabbitmq-server (node rabbit@localhost, its database on the replicated
 * filesystem) runs on alpha under urbd-failover, through scripts/services/rabbitmq. A
 * publisher sends persistent messages to a durable queue with publisher confirms and
 * records every confirmed one; alpha dies as a node does, beta takes over by itself, and
 * every confirmed message is consumed from beta's broker.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import amqp from 'amqplib';
import t from 'tap';
import { failoverTrio, killNode, serviceBlock, waitSupervisor } from '../helpers/failover.js';
import { rabbitCommands, runService } from '../helpers/services.js';
import { freePort } from '../helpers/pair.js';
import { run, sleep } from '../helpers/server.js';

const QUEUE = 'orders';
const QUEUE_TYPE = process.env.URBD_TEST_QUEUE_TYPE ?? 'classic';

t.test('kill -9 of the Primary: every confirmed message is consumed from beta', async (t) => {
  const port = await freePort();
  const epmd = { alpha: await freePort(), beta: await freePort() };
  const dist = await freePort();
  // The same Erlang cookie on both nodes, as a real pair would have.
  const cmds = (n: 'alpha' | 'beta', dir: string) =>
    rabbitCommands({
      run: `${dir}/mq-${n}`,
      port,
      distPort: dist,
      epmdPort: epmd[n],
      cookie: `${dir}/erlang.cookie`,
    });
  const f = await failoverTrio(t, {
    sizeBytes: 128 << 20,
    perNode: (n, dir) => {
      writeFileSync(`${dir}/erlang.cookie`, 'urbd-failover-test-cookie', { mode: 0o400 });
      return serviceBlock('broker', cmds(n, dir));
    },
  });
  t.teardown(async () => {
    for (const n of ['alpha', 'beta'] as const) await runService(cmds(n, f.dir).kill);
  });
  const up = await waitSupervisor(
    f.sup.alpha,
    (r) => r.phase === 'running',
    'RabbitMQ on alpha',
    120000,
  );
  t.comment(
    `alpha took it: ${up.lastFailover?.phases.map((p) => `${p.phase} ${p.ms} ms`).join(', ')}`,
  );

  const url = `amqp://guest:guest@127.0.0.1:${port}`;
  const conn = await amqp.connect(url);
  conn.on('error', () => undefined);
  const ch = await conn.createConfirmChannel();
  ch.on('error', () => undefined);
  await ch.assertQueue(QUEUE, { durable: true, arguments: { 'x-queue-type': QUEUE_TYPE } });
  // RabbitMQ 3.10 does not fsync the files it creates when it first boots and when a queue
  // is declared (Ra's meta.dets, the queue's index directory): a power loss in the first
  // seconds of a fresh broker leaves it unable to boot, with or without urbd (tried on a
  // disk that forgets unflushed writes: "not_a_dets_file"). A broker that has run for
  // half a minute has had them written back by the kernel; sync -f stands for that here.
  // Messages are another matter: those confirmed from here on rely on RabbitMQ's own fsyncs.
  const synced = await run('sync', ['-f', f.mnt.alpha], { timeoutMs: 30000 });
  t.equal(synced.code, 0, synced.stderr);
  const confirmed: number[] = [];
  let stop = false;
  const publisher = (async () => {
    for (let id = 1; !stop; id++) {
      try {
        await new Promise<void>((resolve, reject) => {
          ch.sendToQueue(QUEUE, Buffer.from(String(id)), { persistent: true }, (err) =>
            err ? reject(err as Error) : resolve(),
          );
        });
        confirmed.push(id);
      } catch {
        return;
      }
    }
  })();
  conn.on('close', () => (stop = true));
  while (confirmed.length < 300) await sleep(50);
  const brokerPid = Number(readFileSync(`${f.dir}/mq-alpha/rabbitmq.pid`, 'utf8'));
  const epmdPid = Number(readFileSync(`${f.dir}/mq-alpha/epmd.pid`, 'utf8'));
  const killedAt = await killNode(f, 'alpha', [brokerPid, epmdPid]);
  stop = true;
  await Promise.race([publisher, sleep(10000)]);
  t.ok(confirmed.length >= 300, `${confirmed.length} messages confirmed by alpha's broker`);

  const onBeta = await waitSupervisor(
    f.sup.beta,
    (r) => r.phase === 'running',
    'RabbitMQ on beta',
    120000,
  ).catch((err: Error) => {
    // What the broker said is the first thing to read when this fails.
    const log = `${f.dir}/mq-beta/log/rabbit@localhost.log`;
    const tail = existsSync(log)
      ? readFileSync(log, 'utf8').split('\n').slice(-30).join('\n')
      : 'no log';
    throw new Error(`${err.message}\n${tail}`);
  });
  t.equal(onBeta.role, 'Primary');
  // The first confirmed publish on beta: the clients' view of the failover.
  let c2: amqp.ChannelModel | undefined;
  for (let i = 0; i < 600 && !c2; i++) {
    c2 = await amqp.connect(url).catch(() => undefined);
    if (!c2) await sleep(100);
  }
  if (!c2) throw new Error('no broker on beta');
  c2.on('error', () => undefined);
  const ch2 = await c2.createConfirmChannel();
  await ch2.assertQueue(QUEUE, { durable: true, arguments: { 'x-queue-type': QUEUE_TYPE } });
  // The queue's own recovery may still be under way when the broker accepts connections: a
  // publish is then nacked, and a client publishes again, as a real one would.
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((resolve) =>
      ch2.sendToQueue(QUEUE, Buffer.from('after-failover'), { persistent: true }, (err) =>
        resolve(!err),
      ),
    );
    if (ok) break;
    if (i === 100) throw new Error('beta never confirmed a publish');
    await sleep(200);
  }
  t.comment(
    `failover: kill → beta running ${Date.now() - killedAt} ms (first confirmed publish now); phases: ${onBeta.lastFailover?.phases
      .map((p) => `${p.phase} ${p.ms} ms`)
      .join(', ')}`,
  );
  // Consume everything, acking as we go, until the marker published after the failover.
  const got = new Set<number>();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`marker not consumed; got ${got.size}`)),
      60000,
    );
    void ch2.consume(QUEUE, (m) => {
      if (!m) return;
      ch2.ack(m);
      const body = m.content.toString();
      if (body === 'after-failover') {
        clearTimeout(timer);
        resolve();
      } else got.add(Number(body));
    });
  });
  const lost = confirmed.filter((id) => !got.has(id));
  t.same(lost, [], `every confirmed message was consumed from beta (${confirmed.length})`);
  await c2.close();
  await conn.close().catch(() => undefined);
});
