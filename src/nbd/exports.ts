import type { BlockTarget } from './target.js';
import { TFlag } from './constants.js';

/** One named export: a target plus how it is presented. */
export interface ExportSpec {
  name: string;
  description?: string;
  target: BlockTarget;
  /** Serve read-only even if the target could write. */
  readOnly?: boolean;
  /**
   * Why the export cannot be opened right now (a Secondary resource, say), or undefined when
   * it can. Asked at every handshake, so the answer follows the owner's state.
   */
  unavailable?: () => string | undefined;
}

/** The exports a server offers, and which one a client that names none gets. */
export class ExportTable {
  private readonly byName = new Map<string, ExportSpec>();
  private defaultName: string | undefined;

  add(spec: ExportSpec, opts: { isDefault?: boolean } = {}): void {
    if (spec.name.length === 0) throw new Error('an export needs a non-empty name');
    if (this.byName.has(spec.name)) throw new Error(`export "${spec.name}" is defined twice`);
    this.byName.set(spec.name, spec);
    if (opts.isDefault || this.defaultName === undefined) this.defaultName = spec.name;
  }

  remove(name: string): void {
    this.byName.delete(name);
    if (this.defaultName === name) this.defaultName = this.byName.keys().next().value;
  }

  /** The empty name means the default export. */
  lookup(name: string): ExportSpec | undefined {
    if (name === '')
      return this.defaultName === undefined ? undefined : this.byName.get(this.defaultName);
    return this.byName.get(name);
  }

  list(): ExportSpec[] {
    return [...this.byName.values()];
  }
}

export function isReadOnly(spec: ExportSpec): boolean {
  return spec.readOnly === true || spec.target.capabilities.readOnly;
}

/**
 * The transmission flags for an export. They must tell the truth: a client trusts FLUSH/FUA
 * to mean durable, and MULTI_CONN to mean a flush on one connection covers all of them.
 */
export function transmissionFlags(spec: ExportSpec, structuredReplies: boolean): number {
  const caps = spec.target.capabilities;
  const ro = isReadOnly(spec);
  let flags = TFlag.HAS_FLAGS;
  if (ro) flags |= TFlag.READ_ONLY;
  if (caps.flush) flags |= TFlag.SEND_FLUSH;
  // FUA is about writes, which a read-only export takes none of. FLUSH stays: it is harmless
  // there, and clients that flush on close (qemu) would otherwise have nothing to call.
  if (!ro && caps.flush && caps.fua) flags |= TFlag.SEND_FUA;
  if (!ro && caps.trim) flags |= TFlag.SEND_TRIM;
  if (!ro && caps.zero) {
    flags |= TFlag.SEND_WRITE_ZEROES;
    if (caps.fastZero) flags |= TFlag.SEND_FAST_ZERO;
  }
  // Every read is sent as one chunk, so "don't fragment" costs nothing once chunks exist.
  if (structuredReplies) flags |= TFlag.SEND_DF;
  if (caps.multiConn) flags |= TFlag.CAN_MULTI_CONN;
  if (caps.cache) flags |= TFlag.SEND_CACHE;
  return flags;
}
