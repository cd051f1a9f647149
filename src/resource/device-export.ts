/**
 * The resource's NBD export: its Unix socket and TCP listeners, and the target behind it,
 * which follows attach and detach (the write path over the disk, or a diskless node's reads
 * from its peer).
 */
import fs from 'node:fs';
import type { Logger } from 'pino';
import type { HostConfig } from '../config/index.js';
import { type ListenAddress, NbdServer } from '../nbd/index.js';
import type { BlockTarget } from '../nbd/target.js';
import { DeviceSwitch } from './device-switch.js';
import { DisklessTarget } from './diskless-target.js';
import type { Peer } from './peer.js';
import type { IoGate, ResourceTarget } from './write-path.js';

/** What the export needs from its resource. */
export interface ExportHost extends IoGate {
  readonly name: string;
  readonly node: string;
  readonly log: Logger;
  readonly host: HostConfig;
  readonly exportSocket: string;
  readonly role: string;
  readPeer(): Peer | undefined;
  ioRefusal(): string | undefined;
  changed(): void;
}

export class DeviceExport {
  private nbd: NbdServer | undefined;
  tcpListeners: ListenAddress[] = [];
  /** The write path over the attached disk; the export reaches the disk through it. */
  target: ResourceTarget | undefined;
  /**
   * What every connection's requests go through, to the target serving now: a detach
   * switches a connection from the disk to the peer without the client noticing.
   */
  readonly ioSwitch = new DeviceSwitch(() => this.currentTarget());

  constructor(
    private readonly r: ExportHost,
    /** The error start throws when a listener cannot be opened. */
    private readonly listenFailed: (message: string) => Error,
  ) {}

  private currentTarget(): BlockTarget {
    if (this.target) return this.target;
    // Diskless: the device is the peer's, at the peer's size.
    const r = this.r;
    const peer = r.readPeer();
    const size = peer?.peerDeviceBytes;
    if (!size) throw new Error(`${r.name} has no disk attached and no UpToDate peer`);
    if (this.diskless?.size !== size) this.diskless = new DisklessTarget(r, size);
    return this.diskless;
  }

  private diskless: DisklessTarget | undefined;

  get listening(): boolean {
    return this.nbd !== undefined;
  }

  clientCount(): number {
    return this.nbd?.clientsOf(this.r.name) ?? 0;
  }

  dropClients(reason: string): number {
    return this.nbd?.dropClientsOf(this.r.name, reason) ?? 0;
  }

  async start(): Promise<void> {
    if (this.nbd) return;
    const r = this.r;
    const server = new NbdServer({ log: r.log.child({ nbd: true }) });
    const ioSwitch = this.ioSwitch;
    server.exports.add(
      {
        name: r.name,
        description: `urbd resource ${r.name} on ${r.node}`,
        // The disk behind the export comes and goes with attach and detach; each connection
        // follows it through the switch. A client only reaches the target after
        // `unavailable` said yes, which needs an attached disk or an UpToDate peer to read from.
        get target(): BlockTarget {
          return ioSwitch.connectionTarget();
        },
        // A detach in progress on a Primary holds requests until the peer serves them.
        unavailable: () => (ioSwitch.held && r.role === 'Primary' ? undefined : r.ioRefusal()),
      },
      { isDefault: true },
    );
    try {
      await server.listen({ path: r.exportSocket });
      this.tcpListeners = [];
      for (const a of r.host.nbdListen) {
        this.tcpListeners.push(await server.listen({ host: a.host, port: a.port }));
      }
    } catch (err) {
      await server.close();
      throw this.listenFailed(`cannot serve ${r.name}: ${(err as Error).message}`);
    }
    this.nbd = server;
    r.changed();
  }

  async stop(): Promise<void> {
    const server = this.nbd;
    if (!server) return;
    this.nbd = undefined;
    await server.close();
    fs.rmSync(this.r.exportSocket, { force: true });
    this.tcpListeners = [];
  }
}
