/**
 * `urbdadm resize` (drbd.md §1.2): the device grows, online, after its backing disks did.
 *
 * The node that runs it (the Primary; a Secondary hands it over, resize-rules.ts) asks every
 * data peer what its backing disk offers now, picks the new size, and has the peers grow
 * first: until it grows itself no client can be given the new size, so no replicated write
 * reaches a peer past the end it knows. Each grow commits the size and, unless
 * `--assume-clean`, the new area's bits in one metadata transaction; then both sides decide
 * again from the same two tuples and the "bits but no resync" rule copies the new area from
 * the Primary (peer-handshake.ts). NBD clients see the new size on their next connection; a
 * connection keeps the size it was given, as NBD has it.
 *
 * A resize cut short (a link cut or a crash between the peers' grow and ours) leaves sizes
 * that differ with disks that can hold the larger one; the next handshake grows the smaller
 * side (sizesMismatch), so nothing is refused or lost.
 */
import type { Logger } from 'pino';
import type { ResourceConfig } from '../config/index.js';
import type { MessageBodies } from '../replication/schema.js';
import type { FileDisk } from '../storage/file-disk.js';
import { AdminError, commandError } from './admin-error.js';
import type { DiskMeta } from './disk-meta.js';
import { decideAgain } from './invalidate.js';
import type { Peer } from './peer.js';
import { verifyState } from './peer-verify.js';
import {
  growRefusal,
  isRefusal,
  type ResizeRefusal,
  resizeSetup,
  type ResizeSetupInput,
  resizeTarget,
} from './resize-rules.js';
import type { DiskState, Role } from './states.js';

export interface ResizeArgs {
  /** `--size`: the new size in bytes; otherwise `disk { size }`, else all the disks offer. */
  sizeBytes?: number;
  /** Where sizeBytes came from, for refusals: `--size` unless said otherwise. */
  sizeBy?: string;
  /** `--assume-clean`: the new area is taken as identical on every node (e.g. zeroes). */
  assumeClean: boolean;
}

export interface ResizeResult {
  from: number;
  to: number;
  /** Why nothing changed, when nothing did. */
  unchanged?: string;
}

/** What resize needs of the resource. */
export interface ResizeHost {
  readonly name: string;
  readonly node: string;
  readonly role: Role;
  readonly disk: DiskState;
  readonly meta: DiskMeta | undefined;
  readonly backing: FileDisk | undefined;
  readonly peers: Peer[];
  readonly config: ResourceConfig;
  readonly log: Logger;
  changed(): void;
  serial<T>(fn: () => Promise<T> | T): Promise<T>;
}

type Request = Omit<MessageBodies['resizeRequest'], 'id'>;
type Reply = MessageBodies['resizeReply'];

/** How long a peer may take to answer; a handed-over resize waits for the whole run. */
const ANSWER_MS = 20_000;
const RUN_MS = 120_000;

export class Resizer {
  private nextId = 1;
  private readonly waiting = new Map<
    number,
    { peer: Peer; done: (r: Reply) => void; fail: (e: Error) => void }
  >();

  constructor(private readonly r: ResizeHost) {}

  /** `urbdadm resize`. Throws AdminError with the reason when it cannot be done. */
  async resize(args: ResizeArgs): Promise<ResizeResult> {
    const setup = resizeSetup(this.setupInput());
    if (isRefusal(setup)) throw fromRefusal(setup);
    if (setup.run === 'here') return this.runHere(args);
    const peer = this.r.peers.find((p) => p.name === setup.to)!;
    const from = this.r.meta?.sizeBytes ?? 0;
    this.r.log.info({ primary: peer.name }, 'resize: handed to the Primary');
    const reply = await this.ask(peer, {
      kind: 'run',
      bytes: args.sizeBytes ?? 0,
      assumeClean: args.assumeClean,
      sizeBy: args.sizeBy ?? '',
    });
    if (reply.refusal) throw commandError(reply.code || 'ERR_RESIZE', reply.refusal);
    return {
      from,
      to: reply.deviceBytes,
      ...(reply.unchanged ? { unchanged: reply.unchanged } : {}),
    };
  }

  /** A peer's resize request (peer.ts routes it here). */
  onRequest(peer: Peer, id: number, req: Request): void {
    const answer = (body: Omit<Reply, 'id'>): void => {
      peer.session?.link.send('resizeReply', { id, ...body });
    };
    const refuse = (x: ResizeRefusal): void =>
      answer({ refusal: x.message, code: x.code, backingBytes: 0, deviceBytes: 0, unchanged: '' });
    if (req.kind === 'run') {
      void this.r
        .serial(() =>
          this.resize({
            sizeBytes: req.bytes || undefined,
            ...(req.sizeBy ? { sizeBy: req.sizeBy } : {}),
            assumeClean: req.assumeClean,
          }),
        )
        .then(
          (res) =>
            answer({
              refusal: '',
              code: '',
              backingBytes: 0,
              deviceBytes: res.to,
              unchanged: res.unchanged ?? '',
            }),
          (err: unknown) => refuse(asRefusal(err)),
        );
      return;
    }
    const meta = this.r.meta;
    const backing = this.r.backing;
    if (!meta || !backing) {
      return refuse({ code: 'ERR_NO_DISK', message: `${this.r.node} has no disk attached` });
    }
    // The peer saw us connected and in sync; make sure we agree before touching anything.
    const setup = resizeSetup(this.setupInput());
    if (isRefusal(setup)) return refuse(setup);
    let backingBytes: number;
    try {
      backingBytes = backing.refreshSize();
    } catch (err) {
      return refuse(asRefusal(err));
    }
    if (req.kind === 'query') {
      return answer({
        refusal: '',
        code: '',
        backingBytes,
        deviceBytes: meta.sizeBytes,
        unchanged: '',
      });
    }
    if (req.kind !== 'grow') {
      return refuse({ code: 'EPROTO', message: `unknown resize request "${req.kind}"` });
    }
    const no = growRefusal(this.r.node, meta.sizeBytes, backingBytes, req.bytes);
    if (no) return refuse(no);
    try {
      this.growHere(req.bytes, req.assumeClean, peer.name);
    } catch (err) {
      return refuse(asRefusal(err));
    }
    answer({ refusal: '', code: '', backingBytes, deviceBytes: req.bytes, unchanged: '' });
  }

  onReply(peer: Peer, reply: Reply): void {
    const w = this.waiting.get(reply.id);
    if (!w || w.peer !== peer) return;
    this.waiting.delete(reply.id);
    w.done(reply);
  }

  /** The session with `peer` ended: what we were asking it cannot be answered. */
  peerLost(peer: Peer): void {
    for (const [id, w] of this.waiting) {
      if (w.peer !== peer) continue;
      this.waiting.delete(id);
      w.fail(
        commandError(
          'ERR_RESIZE_DISCONNECTED',
          `the connection to ${peer.name} was lost during resize`,
        ),
      );
    }
  }

  /**
   * Grows this node's device: metadata (size and new bits in one transaction), the receiver's
   * bounds, and what every peer knows of our size (a diskless peer serves at it).
   */
  growHere(bytes: number, assumeClean: boolean, by: string): void {
    const r = this.r;
    const meta = r.meta!;
    const from = meta.sizeBytes;
    // Already this size: grown by a resize the peer ran at the same time.
    if (bytes <= from) return;
    const bits = meta.growTo(bytes, !assumeClean);
    for (const p of r.peers) {
      const s = p.session;
      if (!s?.decided) continue;
      s.receiver?.grow(bytes);
      s.link.send('sizes', { backingBytes: r.backing?.size ?? 0, deviceBytes: bytes });
    }
    r.log.warn(
      { from, to: bytes, outOfSync: bits * 4096, assumeClean, by },
      assumeClean
        ? `device grown from ${from} to ${bytes} bytes; the new area is taken as identical (--assume-clean)`
        : `device grown from ${from} to ${bytes} bytes; the new area is out of sync until resynced`,
    );
    r.changed();
  }

  private async runHere(args: ResizeArgs): Promise<ResizeResult> {
    const r = this.r;
    const meta = r.meta!;
    const from = meta.sizeBytes;
    const peers = r.peers.filter((p) => p.diskful);
    const backing = [{ node: r.node, bytes: r.backing!.refreshSize() }];
    for (const p of peers) {
      const a = await this.ask(p, { kind: 'query', bytes: 0, assumeClean: false, sizeBy: '' });
      if (a.refusal) throw commandError(a.code || 'ERR_RESIZE', a.refusal);
      backing.push({ node: p.name, bytes: a.backingBytes });
    }
    const configured = r.config.disk.sizeBytes;
    const requested =
      args.sizeBytes !== undefined
        ? { bytes: args.sizeBytes, by: args.sizeBy ?? '--size' }
        : configured !== undefined
          ? { bytes: configured, by: 'disk { size }' }
          : undefined;
    const target = resizeTarget({ deviceBytes: from, backing, requested });
    if (isRefusal(target)) throw fromRefusal(target);
    if ('unchanged' in target) {
      r.log.info(`resize: nothing to do: ${target.unchanged}`);
      return { from, to: from, unchanged: target.unchanged };
    }
    // The answers took a while: the state they were asked in must still hold.
    const again = resizeSetup(this.setupInput());
    if (isRefusal(again)) throw fromRefusal(again);
    if (again.run !== 'here') {
      throw commandError('ERR_RESIZE', `${again.to} became Primary during resize; run it again`);
    }
    for (const p of peers) {
      const a = await this.ask(p, {
        kind: 'grow',
        bytes: target.grow,
        assumeClean: args.assumeClean,
        sizeBy: '',
      });
      if (a.refusal) throw commandError(a.code || 'ERR_RESIZE', a.refusal);
    }
    this.growHere(target.grow, args.assumeClean, 'urbdadm resize');
    if (!args.assumeClean) {
      for (const p of peers) await decideAgain(p);
    }
    return { from, to: target.grow };
  }

  private ask(peer: Peer, req: Request): Promise<Reply> {
    const s = peer.session;
    if (!s?.decided) {
      return Promise.reject(
        commandError('ERR_RESIZE_DISCONNECTED', `${peer.name} is not connected`),
      );
    }
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.waiting.delete(id);
          reject(commandError('ERR_RESIZE', `${peer.name} did not answer the resize request`));
        },
        req.kind === 'run' ? RUN_MS : ANSWER_MS,
      );
      this.waiting.set(id, {
        peer,
        done: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        fail: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      s.link.send('resizeRequest', { id, ...req });
    });
  }

  private setupInput(): ResizeSetupInput {
    const r = this.r;
    return {
      node: r.node,
      role: r.role,
      disk: r.disk,
      peers: r.peers
        .filter((p) => p.diskful)
        .map((p) => ({
          name: p.name,
          established: p.established,
          connection: p.connection,
          replication: verifyState(p) ?? p.replication,
          disk: p.disk,
          role: p.role,
        })),
    };
  }
}

function fromRefusal(x: ResizeRefusal): AdminError {
  return commandError(x.code, x.message);
}

function asRefusal(err: unknown): ResizeRefusal {
  if (err instanceof AdminError) return { code: err.code, message: err.message };
  return { code: 'ERR_RESIZE', message: (err as Error).message };
}
