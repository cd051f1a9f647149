/**
 * The peer protocol's control messages: one protobuf envelope whose `oneof body` names the
 * message. A frame on the wire is a 12-byte header (frame.ts), this envelope, then the raw
 * bulk bytes (write data, resync data, read replies) that are never re-encoded.
 *
 * Versioning: `PROTOCOL_VERSION` is exchanged in Hello as a min/max range and the highest
 * common value is used. Fields are only ever added, with new numbers; a message a peer does
 * not know decodes as an empty body and is refused as a protocol error.
 *
 * 64-bit generation UUIDs travel as 8 big-endian bytes (protobufjs would otherwise hand us
 * Long objects); offsets and lengths are uint64 and decode as plain numbers (< 2^53).
 */
import protobuf from 'protobufjs';
import { varintLength, writeVarint } from './rle.js';

export const PROTOCOL_MIN = 1;
export const PROTOCOL_MAX = 1;

const PROTO = `
syntax = "proto3";
package urbd.peer.v1;

// ---- link (transport.ts) -------------------------------------------------------------
enum Channel { CHANNEL_UNSPECIFIED = 0; DATA = 1; META = 2; }
message Hello {
  uint32 protocol_min = 1;
  uint32 protocol_max = 2;
  string resource = 3;
  string node = 4;          // the sender's node name
  int32 node_id = 5;        // -1 when unset
  Channel channel = 6;
  bytes link_id = 7;        // pairs the data and meta sockets of one connection (16 bytes)
  bytes challenge = 8;      // random nonce the peer must answer with HMAC (empty: no secret)
  repeated string features = 9;
  string hmac_alg = 10;     // cram-hmac-alg of the challenge answers (empty: no secret)
}
message AuthResponse { bytes hmac = 1; }
message AuthResult { bool ok = 1; string reason = 2; }
message Ping { uint64 id = 1; }
message PingAck { uint64 id = 1; }
message Goodbye { string reason = 1; bool refused = 2; } // refused: retrying will not help

// ---- resource handshake ---------------------------------------------------------------
message Params {
  string protocol = 1;      // "A" | "B" | "C"
  bool allow_two_primaries = 2;
  bool discard_my_data = 3;
  string after_sb0pri = 4;
  string after_sb1pri = 5;
  string after_sb2pri = 6;
  bool always_asbp = 7;
  uint32 max_epoch_size = 8;
}
message Sizes {
  uint64 backing_bytes = 1; // what the backing disk offers (0: diskless)
  uint64 device_bytes = 2;  // the size in this node's metadata
}
message Uuids {
  bytes current = 1;
  bytes bitmap = 2;
  repeated bytes history = 3;
  uint64 dirty_bits = 4;
  uint32 flags = 5;         // UUID_FLAG_* below
}
// A node the sender is connected to (handshake done), as the sender sees it.
message SeenNode { string name = 1; string role = 2; string disk = 3; }
// "target is Outdated": ordered by "by" (a Primary that lost its link to target) and relayed by
// whoever holds the record, until target reports UpToDate again while connected to "by".
message OutdateRecord { string target = 1; string by = 2; }
message State {
  string role = 1;          // Primary | Secondary
  string disk = 2;          // DiskState
  bool sync_paused = 3;     // user pause-sync on the sender
  // Quorum (quorum.ts). Senders without quorum support leave these unset.
  bool quorum = 4;          // the sender's partition has quorum (true when quorum is off)
  repeated SeenNode sees = 5;
  string promotable = 6;    // "" when the sender may be promoted now, else why not
  repeated OutdateRecord outdated = 7;
  bool leaving = 8;         // a graceful down/disconnect: the sender no longer votes
}
// A Primary that lost a data peer asks a node that may still reach it (the tiebreaker) to
// outdate it. The answer: outdated | unreachable | primary.
message OutdateRequest { uint64 id = 1; string target = 2; }
message OutdateReply { uint64 id = 1; string result = 2; }
// Bitmap exchange: RLE chunks (rle.ts) in order; the last one has last = true.
message BitmapChunk { uint64 total_bits = 1; uint64 first_bit = 2; bytes rle = 3; bool last = 4; }
message SyncUuid { bytes uuid = 1; }
message ResyncDone { Uuids uuids = 1; uint64 failed_bits = 2; }

// ---- replication (data socket) ---------------------------------------------------------
message Data {
  uint64 seq = 1;           // strictly increasing per connection; replays are refused
  uint64 epoch = 2;
  uint64 offset = 3;
  uint64 length = 4;
  uint32 flags = 5;         // DATA_FLAG_* below
}
message Barrier { uint64 epoch = 1; uint32 writes = 2; }
message ReadRequest { uint64 id = 1; uint64 offset = 2; uint64 length = 3; }
message ReadReply { uint64 id = 1; string error = 2; }    // payload: the bytes, unless error
// Checksum-based resync (csums-alg, drbd.md §6.5): digests of the SyncTarget's blocks (one per
// 4 KiB, verify.ts blockDigests) in digest_alg; the source answers in_sync (no payload) when
// its blocks hash the same.
message RsRequest { uint64 offset = 1; uint64 length = 2; bytes digests = 3; string digest_alg = 4; }
message RsReply { uint64 offset = 1; uint64 length = 2; string error = 3; bool in_sync = 4; } // payload: data
// Online verify (verify.ts). OvStart opens a run on the VerifyTarget; each OvRequest covers
// up to 64 blocks. digests: the sender's per-4-KiB-block digests (the receiver compares and
// answers with mismatch, a bitset of differing blocks), or empty (the receiver answers with
// its own digests and the sender compares, then sends OvResult for what differed).
message OvStart { uint64 start = 1; uint64 stop = 2; string alg = 3; }
message OvRequest { uint64 offset = 1; uint64 length = 2; bytes digests = 3; }
message OvReply { uint64 offset = 1; uint64 length = 2; bytes digests = 3; bytes mismatch = 4; string error = 5; }
message OvResult { uint64 offset = 1; uint64 length = 2; bytes mismatch = 3; }
message OvDone { uint64 verified_blocks = 1; uint64 found_blocks = 2; bool aborted = 3; }

// Online resize (resource/resize.ts). kind: "query" (re-read your backing disk's size and
// say whether you can grow now), "grow" (grow the device to bytes; the new area is out of
// sync unless assume_clean), or "run" (a Secondary hands the whole resize to its Primary).
// The reply names the same id; refusal (with its ERR_* code) is empty when it was carried out.
message ResizeRequest { uint64 id = 1; string kind = 2; uint64 bytes = 3; bool assume_clean = 4; string size_by = 5; }
message ResizeReply { uint64 id = 1; string refusal = 2; uint64 backing_bytes = 3; uint64 device_bytes = 4; string code = 5; string unchanged = 6; }

// ---- acks (meta socket) ----------------------------------------------------------------
message RecvAck { uint64 seq = 1; }
message WriteAck { uint64 seq = 1; }
message NegAck { uint64 seq = 1; string error = 2; }
message BarrierAck { uint64 epoch = 1; uint32 writes = 2; }
message RsWriteAck { uint64 offset = 1; uint64 length = 2; bool ok = 3; }
message SyncPause { bool paused = 1; }

message Message {
  oneof body {
    Hello hello = 1;
    AuthResponse auth_response = 2;
    AuthResult auth_result = 3;
    Ping ping = 4;
    PingAck ping_ack = 5;
    Goodbye goodbye = 6;
    Params params = 10;
    Sizes sizes = 11;
    Uuids uuids = 12;
    State state = 13;
    BitmapChunk bitmap_chunk = 14;
    SyncUuid sync_uuid = 15;
    ResyncDone resync_done = 16;
    Data data = 20;
    Barrier barrier = 21;
    ReadRequest read_request = 22;
    ReadReply read_reply = 23;
    RsRequest rs_request = 24;
    RsReply rs_reply = 25;
    RecvAck recv_ack = 30;
    WriteAck write_ack = 31;
    NegAck neg_ack = 32;
    BarrierAck barrier_ack = 33;
    RsWriteAck rs_write_ack = 34;
    SyncPause sync_pause = 35;
    OutdateRequest outdate_request = 36;
    OutdateReply outdate_reply = 37;
    OvStart ov_start = 38;
    OvRequest ov_request = 39;
    OvReply ov_reply = 40;
    OvResult ov_result = 41;
    OvDone ov_done = 42;
    ResizeRequest resize_request = 43;
    ResizeReply resize_reply = 44;
  }
}
`;

/** Uuids.flags, as DRBD's P_UUIDS flags (drbd.md §3.4). */
export const UUID_FLAG_DISCARD_MY_DATA = 1;
export const UUID_FLAG_CRASHED_PRIMARY = 2;
export const UUID_FLAG_INCONSISTENT = 4;
export const UUID_FLAG_SKIP_INITIAL_SYNC = 8;

/** Data.flags. */
export const DATA_FLAG_FUA = 1;
/** The range is to read back as zeroes; no payload. */
export const DATA_FLAG_ZERO = 2;
/** The range is trimmed; no payload. */
export const DATA_FLAG_TRIM = 4;
/** Protocol B: answer with RecvAck when received. */
export const DATA_FLAG_RECV_ACK = 8;
/** Protocol C: answer with WriteAck when written. */
export const DATA_FLAG_WRITE_ACK = 16;

export type Channel = 'DATA' | 'META';

export interface Hello {
  protocolMin: number;
  protocolMax: number;
  resource: string;
  node: string;
  nodeId: number;
  channel: Channel;
  linkId: Uint8Array;
  challenge: Uint8Array;
  features: string[];
  hmacAlg: string;
}
export interface Params {
  protocol: string;
  allowTwoPrimaries: boolean;
  discardMyData: boolean;
  afterSb0pri: string;
  afterSb1pri: string;
  afterSb2pri: string;
  alwaysAsbp: boolean;
  maxEpochSize: number;
}
export interface Sizes {
  backingBytes: number;
  deviceBytes: number;
}
export interface Uuids {
  current: Uint8Array;
  bitmap: Uint8Array;
  history: Uint8Array[];
  dirtyBits: number;
  flags: number;
}
export interface SeenNode {
  name: string;
  role: string;
  disk: string;
}
export interface OutdateRecord {
  target: string;
  by: string;
}
export interface State {
  role: string;
  disk: string;
  syncPaused: boolean;
  quorum: boolean;
  sees: SeenNode[];
  promotable: string;
  outdated: OutdateRecord[];
  leaving: boolean;
}
export interface BitmapChunk {
  totalBits: number;
  firstBit: number;
  rle: Uint8Array;
  last: boolean;
}
export interface Data {
  seq: number;
  epoch: number;
  offset: number;
  length: number;
  flags: number;
}

/**
 * Every message, keyed by its oneof name. Absent scalar fields decode as their defaults
 * (0, "", false, empty bytes), so handlers see complete objects.
 */
export interface MessageBodies {
  hello: Hello;
  authResponse: { hmac: Uint8Array };
  authResult: { ok: boolean; reason: string };
  ping: { id: number };
  pingAck: { id: number };
  goodbye: { reason: string; refused: boolean };
  params: Params;
  sizes: Sizes;
  uuids: Uuids;
  state: State;
  bitmapChunk: BitmapChunk;
  syncUuid: { uuid: Uint8Array };
  resyncDone: { uuids: Uuids; failedBits: number };
  data: Data;
  barrier: { epoch: number; writes: number };
  readRequest: { id: number; offset: number; length: number };
  readReply: { id: number; error: string };
  rsRequest: { offset: number; length: number; digests: Uint8Array; digestAlg: string };
  rsReply: { offset: number; length: number; error: string; inSync: boolean };
  recvAck: { seq: number };
  writeAck: { seq: number };
  negAck: { seq: number; error: string };
  barrierAck: { epoch: number; writes: number };
  rsWriteAck: { offset: number; length: number; ok: boolean };
  syncPause: { paused: boolean };
  outdateRequest: { id: number; target: string };
  outdateReply: { id: number; result: string };
  ovStart: { start: number; stop: number; alg: string };
  ovRequest: { offset: number; length: number; digests: Uint8Array };
  ovReply: {
    offset: number;
    length: number;
    digests: Uint8Array;
    mismatch: Uint8Array;
    error: string;
  };
  ovResult: { offset: number; length: number; mismatch: Uint8Array };
  ovDone: { verifiedBlocks: number; foundBlocks: number; aborted: boolean };
  resizeRequest: { id: number; kind: string; bytes: number; assumeClean: boolean; sizeBy: string };
  resizeReply: {
    id: number;
    refusal: string;
    backingBytes: number;
    deviceBytes: number;
    code: string;
    /** A run that found nothing to do says why. */
    unchanged: string;
  };
}
export type MessageType = keyof MessageBodies;

/** A decoded control message: its type and body. */
export type PeerMessage = {
  [K in MessageType]: { type: K; body: MessageBodies[K] };
}[MessageType];

// Without Long, protobufjs decodes 64-bit integers as JS numbers; every 64-bit value we send
// as an integer is an offset, length or counter far below 2^53.
protobuf.util.Long = undefined as unknown as typeof protobuf.util.Long;
protobuf.configure();

const root = protobuf.parse(PROTO, { keepCase: false }).root;
const envelope = root.lookupType('urbd.peer.v1.Message');
const bodyTypes = new Set<string>(envelope.oneofs['body']!.oneof);

export class SchemaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SchemaError';
  }
}

/** Encodes one control message. */
export function encodeMessage<K extends MessageType>(
  type: K,
  body: Partial<MessageBodies[K]>,
): Uint8Array {
  return encodeMessageAfter(type, body, 0);
}

/**
 * The messages sent once or more per replicated write or resync request, whose fields are
 * integers, booleans, or strings and bytes that are empty: they are encoded and decoded here
 * by hand, because protobufjs' fromObject/encode/toObject cost several allocations and a few
 * microseconds per message on both nodes (more in a bitmap resync, whose code has not run
 * often enough to be optimised). The bytes are the ones protobufjs writes (present fields in
 * field order; integers and booleans as varints, an empty string or bytes as its tag and a
 * zero length), so the wire format and PROTOCOL_VERSION are unchanged; anything the fast path
 * does not expect (a value out of range, a non-empty string or bytes, an unknown field or
 * wire type) goes through protobufjs.
 */
type FieldKind = 'u64' | 'u32' | 'bool' | 'str' | 'bytes';

interface VarintLayout {
  /** The envelope field's tag (field number << 3 | 2) as varint bytes. */
  tag: readonly number[];
  /** Field names in field-number order (fields 1, 2, …). */
  keys: readonly string[];
  /** Per field: what it holds (a u64 is kept below 2^53). */
  kinds: readonly FieldKind[];
}

function layout(field: number, fields: Record<string, FieldKind>): VarintLayout {
  const tag: number[] = [];
  for (let v = (field << 3) | 2; ; v >>>= 7) {
    if (v < 0x80) {
      tag.push(v);
      break;
    }
    tag.push((v & 0x7f) | 0x80);
  }
  return { tag, keys: Object.keys(fields), kinds: Object.values(fields) };
}

const VARINT_LAYOUTS: Partial<Record<MessageType, VarintLayout>> = {
  data: layout(20, { seq: 'u64', epoch: 'u64', offset: 'u64', length: 'u64', flags: 'u32' }),
  barrier: layout(21, { epoch: 'u64', writes: 'u32' }),
  rsRequest: layout(24, { offset: 'u64', length: 'u64', digests: 'bytes', digestAlg: 'str' }),
  rsReply: layout(25, { offset: 'u64', length: 'u64', error: 'str', inSync: 'bool' }),
  recvAck: layout(30, { seq: 'u64' }),
  writeAck: layout(31, { seq: 'u64' }),
  barrierAck: layout(33, { epoch: 'u64', writes: 'u32' }),
  rsWriteAck: layout(34, { offset: 'u64', length: 'u64', ok: 'bool' }),
};
/** Envelope tag (2-byte varint, all fast types have one) → type. */
const FAST_BY_TAG = new Map<number, MessageType>();
for (const [type, l] of Object.entries(VARINT_LAYOUTS)) {
  FAST_BY_TAG.set(l.tag[0]! | (l.tag[1]! << 8), type as MessageType);
}

/**
 * A field's value as the varint the fast path writes (a boolean as 0/1; -1 for an empty
 * string or bytes, written as a zero length), or undefined when protobufjs must encode it.
 */
function fastValue(kind: FieldKind, v: unknown): number | undefined {
  switch (kind) {
    case 'u64':
    case 'u32':
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return undefined;
      return kind === 'u32' && v > 0xffffffff ? undefined : v;
    case 'bool':
      return typeof v === 'boolean' ? (v ? 1 : 0) : undefined;
    case 'str':
      return v === '' ? -1 : undefined;
    case 'bytes':
      return v instanceof Uint8Array && v.length === 0 ? -1 : undefined;
  }
}

/**
 * One control message encoded into a fresh Buffer after `headroom` bytes left for the
 * caller (the frame header), so a frame's head is one allocation.
 */
export function encodeMessageAfter<K extends MessageType>(
  type: K,
  body: Partial<MessageBodies[K]>,
  headroom: number,
): Buffer {
  const l = VARINT_LAYOUTS[type];
  if (l !== undefined) {
    const b = body as Record<string, unknown>;
    let inner = 0;
    let ok = true;
    for (let i = 0; i < l.keys.length; i++) {
      const raw = b[l.keys[i]!];
      if (raw === undefined) continue;
      const v = fastValue(l.kinds[i]!, raw);
      if (v === undefined) {
        ok = false;
        break;
      }
      inner += 1 + (v < 0 ? 1 : varintLength(v));
    }
    if (ok) {
      const out = Buffer.allocUnsafe(headroom + l.tag.length + varintLength(inner) + inner);
      let at = headroom;
      for (const t of l.tag) out[at++] = t;
      at = writeVarint(out, at, inner);
      for (let i = 0; i < l.keys.length; i++) {
        const raw = b[l.keys[i]!];
        if (raw === undefined) continue;
        const v = fastValue(l.kinds[i]!, raw)!;
        if (v < 0) {
          out[at++] = ((i + 1) << 3) | 2; // field i+1, length-delimited, empty
          out[at++] = 0;
        } else {
          out[at++] = (i + 1) << 3; // field i+1, wire type 0 (varint)
          at = writeVarint(out, at, v);
        }
      }
      return out;
    }
  }
  const bytes = encodeWithProtobuf(type, body);
  const out = Buffer.allocUnsafe(headroom + bytes.length);
  out.set(bytes, headroom);
  return out;
}

/** What protobufjs' toObject gives an absent field of each kind. */
function defaultOf(kind: FieldKind): unknown {
  switch (kind) {
    case 'bool':
      return false;
    case 'str':
      return '';
    case 'bytes':
      return Buffer.alloc(0);
    default:
      return 0;
  }
}

/**
 * The fast path of decodeMessage for VARINT_LAYOUTS' messages: the envelope holds exactly
 * one such body and nothing else, every field of it is known, a varint small enough to be
 * exact as a number (a boolean 0 or 1) or an empty string or bytes. Undefined when anything
 * else is there (protobufjs decides).
 */
function decodeVarintMessage(bytes: Uint8Array): PeerMessage | undefined {
  const n = bytes.length;
  if (n < 3) return undefined;
  const type = FAST_BY_TAG.get(bytes[0]! | (bytes[1]! << 8));
  if (type === undefined) return undefined;
  const l = VARINT_LAYOUTS[type]!;
  let at = 2;
  const len = bytes[at++]!;
  // Our bodies are far below 128 bytes: a longer length is not ours to judge here.
  if (len >= 0x80 || at + len !== n) return undefined;
  const body: Record<string, unknown> = {};
  for (let i = 0; i < l.keys.length; i++) body[l.keys[i]!] = defaultOf(l.kinds[i]!);
  while (at < n) {
    const tag = bytes[at++]!;
    const field = tag >> 3;
    if (tag >= 0x80 || field < 1 || field > l.keys.length) return undefined;
    const kind = l.kinds[field - 1]!;
    if (kind === 'str' || kind === 'bytes') {
      if ((tag & 7) !== 2 || at >= n || bytes[at++] !== 0) return undefined;
      body[l.keys[field - 1]!] = defaultOf(kind);
      continue;
    }
    if ((tag & 7) !== 0) return undefined;
    let v = 0;
    let scale = 1;
    for (let i = 0; ; i++) {
      // Seven bytes hold 49 bits: always exact; longer varints go to protobufjs.
      if (at >= n || i === 7) return undefined;
      const byte = bytes[at++]!;
      v += (byte & 0x7f) * scale;
      scale *= 0x80;
      if (byte < 0x80) break;
    }
    if (kind === 'u32' && v > 0xffffffff) return undefined;
    if (kind === 'bool' && v > 1) return undefined;
    body[l.keys[field - 1]!] = kind === 'bool' ? v === 1 : v;
  }
  return { type, body } as unknown as PeerMessage;
}

/**
 * Decodes one control message; throws SchemaError (never anything else) on bytes that are
 * not a valid envelope or carry no known body.
 */
export function decodeMessage(bytes: Uint8Array): PeerMessage {
  return decodeVarintMessage(bytes) ?? decodeWithProtobuf(bytes);
}

/** encodeMessage without the hand-written fast path (the reference the tests compare to). */
export function encodeWithProtobuf<K extends MessageType>(
  type: K,
  body: Partial<MessageBodies[K]>,
): Uint8Array {
  return envelope.encode(envelope.fromObject({ [type]: body })).finish();
}

/** decodeMessage without the hand-written fast path (the reference the tests compare to). */
export function decodeWithProtobuf(bytes: Uint8Array): PeerMessage {
  let decoded: protobuf.Message;
  try {
    decoded = envelope.decode(bytes);
  } catch (err) {
    throw new SchemaError(`undecodable control message: ${(err as Error).message}`);
  }
  const obj = envelope.toObject(decoded, {
    defaults: true,
    arrays: true,
    enums: String,
    longs: Number,
    bytes: Buffer as unknown as StringConstructor,
    oneofs: true,
  }) as Record<string, unknown>;
  const type = obj['body'];
  if (typeof type !== 'string' || !bodyTypes.has(type)) {
    throw new SchemaError('control message with no known body');
  }
  return { type, body: obj[type] } as PeerMessage;
}

/** A 64-bit UUID as the 8 big-endian bytes the schema carries. */
export function uuidBytes(u: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(u);
  return b;
}

/** The inverse of uuidBytes; anything but 8 bytes is a protocol error. */
export function uuidFromBytes(b: Uint8Array): bigint {
  if (b.length !== 8) throw new SchemaError(`a UUID must be 8 bytes, got ${b.length}`);
  return Buffer.from(b.buffer, b.byteOffset, 8).readBigUInt64BE(0);
}
