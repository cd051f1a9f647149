// The typed result of loading a config: what the rest of urbd consumes.
// Times are milliseconds (or seconds where the name says S), rates KiB/s, sizes bytes or sectors as named.

import type { FailoverSections } from './failover.js';

export interface Pos {
  file: string;
  line: number;
  col: number;
}

export interface Address {
  family: 'ipv4' | 'ipv6';
  host: string;
  port: number;
}

export type Protocol = 'A' | 'B' | 'C';
export type AfterSb0pri =
  | 'disconnect'
  | 'discard-younger-primary'
  | 'discard-older-primary'
  | 'discard-zero-changes'
  | 'discard-least-changes'
  | `discard-node-${string}`;
export type AfterSb1pri =
  'disconnect' | 'consensus' | 'discard-secondary' | 'call-pri-lost-after-sb' | 'violently-as0p';
export type AfterSb2pri = 'disconnect' | 'call-pri-lost-after-sb' | 'violently-as0p';
export type RrConflict =
  'disconnect' | 'call-pri-lost' | 'violently' | 'retry-connect' | 'auto-discard';
export type OnCongestion = 'block' | 'pull-ahead' | 'disconnect';
export type Fencing = 'dont-care' | 'resource-only' | 'resource-and-stonith';
export type OnIoError = 'detach' | 'pass_on' | 'call-local-io-error';
export type OnNoDataAccessible = 'io-error' | 'suspend-io';
export type OnNoQuorum = 'io-error' | 'suspend-io';
export type OnSuspendedPrimaryOutdated = 'disconnect' | 'force-secondary';
/** A node count, or one of DRBD's symbolic values. */
export type Quorum = 'off' | 'majority' | 'all' | number;

export interface NetOptions {
  timeoutMs: number;
  connectIntMs: number;
  pingIntMs: number;
  pingTimeoutMs: number;
  koCount: number;
  maxBuffers: number;
  maxEpochSize: number;
  allowTwoPrimaries: boolean;
  afterSb0pri: AfterSb0pri;
  afterSb1pri: AfterSb1pri;
  afterSb2pri: AfterSb2pri;
  alwaysAsbp: boolean;
  rrConflict: RrConflict;
  cramHmacAlg?: string;
  sharedSecret?: string;
  dataIntegrityAlg?: string;
  csumsAlg?: string;
  csumsAfterCrashOnly: boolean;
  verifyAlg?: string;
  useRle: boolean;
  onCongestion: OnCongestion;
  congestionFillSectors: number;
  congestionExtents: number;
  /** 0 means "use ping-timeout", as in DRBD. */
  socketCheckTimeoutMs: number;
  /** A `disk` option in DRBD 8.4, a `net` option in DRBD 9; either spelling lands here. */
  fencing: Fencing;
  discardMyData: boolean;
}

export interface DiskOptions {
  onIoError: OnIoError;
  alExtents: number;
  alUpdates: boolean;
  resyncRateKiB: number;
  cPlanAheadMs: number;
  cFillTargetSectors: number;
  cDelayTargetMs: number;
  cMaxRateKiB: number;
  cMinRateKiB: number;
  /** Name of the resource whose resync must finish first. */
  resyncAfter?: string;
  /** Explicit device size; absent means "use the backing disk's size". */
  sizeBytes?: number;
}

export interface StartupOptions {
  wfcTimeoutS: number;
  degrWfcTimeoutS: number;
  outdatedWfcTimeoutS: number;
  waitAfterSb: boolean;
  /** Host names; `both` is expanded to every host of the resource. */
  becomePrimaryOn: string[];
}

export interface ResourceOptions {
  onNoDataAccessible: OnNoDataAccessible;
  autoPromote: boolean;
  autoPromoteTimeoutMs: number;
  quorum: Quorum;
  quorumMinimumRedundancy: Quorum;
  onNoQuorum: OnNoQuorum;
  onSuspendedPrimaryOutdated: OnSuspendedPrimaryOutdated;
  /**
   * `handler-timeout`, a urbd extension (DRBD has no such option): how long a handler script
   * may run before it is killed and counts as failed. Seconds in the file.
   */
  handlerTimeoutMs: number;
}

export interface HostConfig {
  name: string;
  nodeId?: number;
  address?: Address;
  /** Host value, else the resource-level value; 'none' means diskless. Always set after loading. */
  disk?: string;
  /** Absent only for a diskless host. */
  metaDisk?: string | 'internal';
  /** DRBD 8.4's indexed external meta-data (`meta-disk /dev/sdc1 [0]`): the 128 MiB slot number. */
  metaDiskIndex?: number;
  device: { path: string; minor: number };
  nbdListen: Address[];
  source: Pos;
}

export interface ResourceConfig {
  name: string;
  source: Pos;
  protocol: Protocol;
  net: NetOptions;
  disk: DiskOptions;
  handlers: Record<string, string>;
  startup: StartupOptions;
  options: ResourceOptions;
  hosts: HostConfig[];
  /** urbd-failover's sections (config/failover.ts); failoverFor() gives one node's chain. */
  failover?: FailoverSections;
}

export interface IgnoredOption {
  keyword: string;
  /** e.g. "global", "common disk", "resource r0 net", "resource r0 on alpha". */
  where: string;
  /** The statement as written, so `dump` can show it as a comment. */
  text: string;
  /** Set when only part of the statement is ignored. */
  note?: string;
  source: Pos;
}

export interface UrbdConfig {
  file: string;
  resources: ResourceConfig[];
  ignored: IgnoredOption[];
}
