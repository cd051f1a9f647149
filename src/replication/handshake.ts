/**
 * The handshake of one peer socket, before anything else may cross it:
 *
 *   dialer                               acceptor
 *   Hello{channel, link_id, challenge} →
 *                                      ← Hello{same channel and link_id, own challenge}
 *   (each side checks the other's Hello: protocol range, resource, node, secret or not)
 *   AuthResponse{answer to its challenge} ⇄ AuthResponse{answer to ours}
 *   AuthResult{ok}                        ⇄ AuthResult{ok}
 *
 * A side that finds something wrong sends AuthResult{ok: false, reason} instead of its next
 * message and hangs up, so the other side can say why even when only one side could tell
 * (say, a node that dialed the wrong peer). Every failure is a LinkError whose message is one
 * line.
 */
import {
  answerMatches,
  authAnswer,
  CHALLENGE_BYTES,
  DEFAULT_HMAC_ALG,
  LINK_ID_BYTES,
  newChallenge,
} from './auth.js';
import type { FrameChannel } from './channel.js';
import { DEFAULT_LIMITS, encodeFrame } from './frame.js';
import { LinkError, type CloseKind } from './link-error.js';
import {
  PROTOCOL_MAX,
  PROTOCOL_MIN,
  type Channel,
  type Hello,
  type MessageBodies,
  type MessageType,
  type PeerMessage,
} from './schema.js';

/** Who we are on the peer link, from the resource's configuration. */
export interface LinkIdentity {
  resource: string;
  node: string;
  /** -1 if unset. */
  nodeId: number;
  /** net { shared-secret } */
  secret?: string;
  /** net { cram-hmac-alg }: a node crypto digest name (sha1, sha256, sha512…); sha256 if unset. */
  hmacAlg?: string;
  /** Optional protocol features this node offers; the link uses those both offer. */
  features?: string[];
}

export interface HandshakeOptions {
  me: LinkIdentity;
  /** The node name the peer must have (a listener shared by several peers: any of them). */
  expectPeer: string | readonly string[];
  timeoutMs: number;
  /** Present for the side that dialed: which socket this is, and the link it belongs to. */
  dial?: { channel: Channel; linkId: Buffer };
  /** Override of the protocol range we speak (tests of version negotiation). */
  protocols?: { min: number; max: number };
}

export interface HandshakeResult {
  channel: Channel;
  linkId: Buffer;
  peer: Hello;
  /** The protocol version both speak (the highest common one). */
  protocol: number;
  /** Features both offered. */
  features: string[];
}

export const WRONG_SECRET = 'authentication failed: wrong shared-secret?';

/**
 * Until the peer is authenticated a frame may be small and carry no data: a stranger must
 * not make us allocate megabytes for it.
 */
const HANDSHAKE_LIMITS = { control: 64 * 1024, data: 0 };

/**
 * Runs the handshake on a fresh channel. Resolves once both sides accepted this socket, with
 * the channel paused: frames that follow stay queued until the owner attaches and resumes.
 * On failure the channel is closed (politely when the peer is owed a reason) and the promise
 * rejects with a LinkError.
 */
export async function runHandshake(
  ch: FrameChannel,
  opts: HandshakeOptions,
): Promise<HandshakeResult> {
  ch.setLimits(HANDSHAKE_LIMITS);
  const inbox = new Inbox(ch);
  const timer = setTimeout(
    () => inbox.fail(`handshake not finished within ${opts.timeoutMs} ms`, 'Timeout'),
    opts.timeoutMs,
  );
  try {
    const result = await converse(ch, inbox, opts);
    ch.detach();
    ch.setLimits(DEFAULT_LIMITS);
    return result;
  } catch (err) {
    if (err instanceof Refusal) {
      // Tell the peer why before hanging up.
      ch.finish(encodeFrame('authResult', { ok: false, reason: err.message }));
      throw new LinkError(err.message, err.kind);
    }
    ch.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** A failure we owe the peer an AuthResult for. */
class Refusal extends Error {
  constructor(
    message: string,
    readonly kind: CloseKind,
  ) {
    super(message);
  }
}

async function converse(
  ch: FrameChannel,
  inbox: Inbox,
  opts: HandshakeOptions,
): Promise<HandshakeResult> {
  const { me } = opts;
  const range = opts.protocols ?? { min: PROTOCOL_MIN, max: PROTOCOL_MAX };
  const alg = me.secret ? (me.hmacAlg ?? DEFAULT_HMAC_ALG).toLowerCase() : '';
  const challenge = newChallenge(me.secret);
  const send = <K extends MessageType>(type: K, body: Partial<MessageBodies[K]>): void =>
    ch.send(encodeFrame(type, body));
  const hello = (channel: Channel, linkId: Buffer): void =>
    send('hello', {
      protocolMin: range.min,
      protocolMax: range.max,
      resource: me.resource,
      node: me.node,
      nodeId: me.nodeId,
      channel,
      linkId,
      challenge,
      features: me.features ?? [],
      hmacAlg: alg,
    });

  let channel: Channel;
  let linkId: Buffer;
  let peer: Hello;
  if (opts.dial) {
    ({ channel, linkId } = opts.dial);
    hello(channel, linkId);
    peer = (await inbox.expect('hello')).body;
    if (peer.channel !== channel || !linkId.equals(peer.linkId)) {
      throw new Refusal('peer answered for another socket or link', 'ProtocolError');
    }
  } else {
    peer = (await inbox.expect('hello')).body;
    if (peer.channel !== 'DATA' && peer.channel !== 'META') {
      throw new Refusal(`malformed hello: channel ${String(peer.channel)}`, 'ProtocolError');
    }
    if (peer.linkId.length !== LINK_ID_BYTES) {
      throw new Refusal(`malformed hello: link id of ${peer.linkId.length} bytes`, 'ProtocolError');
    }
    channel = peer.channel;
    linkId = Buffer.from(peer.linkId);
    ch.label = channel;
    hello(channel, linkId);
  }

  const problem = checkPeerHello(peer, opts, range, alg);
  if (problem) throw new Refusal(problem.reason, problem.kind);
  const protocol = Math.min(range.max, peer.protocolMax);

  send('authResponse', {
    hmac: me.secret
      ? authAnswer(alg, me.secret, peer.challenge, me.node, channel)
      : Buffer.alloc(0),
  });
  const answer = (await inbox.expect('authResponse')).body.hmac;
  const good = me.secret
    ? answerMatches(authAnswer(alg, me.secret, challenge, peer.node, channel), answer)
    : answer.length === 0;
  if (!good) throw new Refusal(WRONG_SECRET, 'AuthFailure');
  send('authResult', { ok: true });
  await inbox.expect('authResult');

  const offered = new Set(peer.features);
  return {
    channel,
    linkId,
    peer,
    protocol,
    features: (me.features ?? []).filter((f) => offered.has(f)),
  };
}

/** What is wrong with the peer's Hello, checked in the order a human would want to hear it. */
function checkPeerHello(
  peer: Hello,
  opts: HandshakeOptions,
  range: { min: number; max: number },
  alg: string,
): { reason: string; kind: CloseKind } | undefined {
  const { me } = opts;
  if (Math.max(range.min, peer.protocolMin) > Math.min(range.max, peer.protocolMax)) {
    return {
      reason:
        `no common protocol version (peer speaks protocol ${peer.protocolMin}–${peer.protocolMax}, ` +
        `we speak ${range.min}–${range.max})`,
      kind: 'ProtocolError',
    };
  }
  if (peer.resource !== me.resource) {
    return {
      reason: `wrong resource: peer ${quoted(peer.node)} has resource ${quoted(peer.resource)}, we have "${me.resource}"`,
      kind: 'ProtocolError',
    };
  }
  const expected = typeof opts.expectPeer === 'string' ? [opts.expectPeer] : opts.expectPeer;
  if (!expected.includes(peer.node)) {
    return {
      reason: `unexpected peer ${quoted(peer.node)} (expected ${expected.map((n) => `"${n}"`).join(' or ')})`,
      kind: 'ProtocolError',
    };
  }
  const peerHasSecret = peer.challenge.length !== 0;
  if (me.secret && !peerHasSecret) {
    return { reason: 'shared-secret configured on this node only', kind: 'AuthFailure' };
  }
  if (!me.secret && peerHasSecret) {
    return { reason: 'shared-secret configured on the peer only', kind: 'AuthFailure' };
  }
  if (me.secret) {
    if (peer.challenge.length !== CHALLENGE_BYTES) {
      return {
        reason: `malformed hello: challenge of ${peer.challenge.length} bytes`,
        kind: 'ProtocolError',
      };
    }
    if (peer.hmacAlg !== alg) {
      return {
        reason: `cram-hmac-alg differs: peer uses ${peer.hmacAlg ? quoted(peer.hmacAlg) : '(none)'}, we use ${alg}`,
        kind: 'AuthFailure',
      };
    }
  }
  return undefined;
}

/**
 * Frames of a socket in handshake, one at a time: the channel is paused after each frame, so
 * whatever follows the last handshake frame stays queued for the link.
 */
class Inbox {
  private frame: PeerMessage | undefined;
  private failure: LinkError | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly ch: FrameChannel) {
    ch.attach(
      (f) => {
        ch.pause();
        this.frame = f.msg;
        this.wake?.();
      },
      (reason, kind) => this.fail(`${reason} during the handshake`, kind),
    );
  }

  fail(reason: string, kind: CloseKind): void {
    this.failure ??= new LinkError(reason, kind);
    this.ch.destroy();
    this.wake?.();
  }

  /** The next frame, which must be of `type`; a refusal from the peer becomes our failure. */
  async expect<K extends MessageType>(type: K): Promise<Extract<PeerMessage, { type: K }>> {
    const msg = await this.next();
    if (msg.type === 'authResult' && !msg.body.ok) {
      throw new LinkError(peerRefused(msg.body.reason), 'AuthFailure');
    }
    if (msg.type !== type) {
      throw new Refusal(`expected ${type} in the handshake, got ${msg.type}`, 'ProtocolError');
    }
    return msg as Extract<PeerMessage, { type: K }>;
  }

  private async next(): Promise<PeerMessage> {
    if (!this.frame && !this.failure) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.ch.resume();
      });
      this.wake = undefined;
    }
    if (this.failure) throw this.failure;
    const msg = this.frame!;
    this.frame = undefined;
    return msg;
  }
}

/**
 * A name from a stranger's Hello, fit for a one-line reason: JSON-quoted (so a line break or
 * quote in it stays visible and harmless) and cut to 64 characters.
 */
function quoted(name: string): string {
  const cut = name.length > 64 ? `${name.slice(0, 64)}…` : name;
  return JSON.stringify(cut);
}

function peerRefused(reason: string): string {
  const oneLine = reason.replace(/[\r\n]+/g, ' ').slice(0, 300) || 'no reason given';
  return `peer refused the connection: ${oneLine}`;
}
