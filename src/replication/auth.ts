/**
 * Challenge-response authentication of a peer socket with the shared secret of
 * `net { cram-hmac-alg …; shared-secret "…"; }`.
 *
 * Each side sends a fresh random challenge in its Hello and answers the other's with
 *
 *   HMAC(alg, secret, challenge ‖ own node name ‖ 0x00 ‖ channel name)
 *
 * The fresh challenge defeats replay of an answer captured earlier; binding the answering
 * node's name defeats reflection (handing a node its own answer back); binding the channel
 * keeps an answer for the data socket from opening a meta socket. The secret never travels.
 */
import { createHmac, getHashes, randomBytes, timingSafeEqual } from 'node:crypto';

import type { Channel } from './schema.js';

export const CHALLENGE_BYTES = 32;
export const LINK_ID_BYTES = 16;
/** cram-hmac-alg when a shared-secret is set without one. */
export const DEFAULT_HMAC_ALG = 'sha256';

const EMPTY = Buffer.alloc(0);

/** Throws a one-line Error unless node's crypto knows the digest `alg`. */
export function checkHmacAlg(alg: string): void {
  if (!getHashes().includes(alg.toLowerCase())) {
    throw new Error(`unknown cram-hmac-alg "${alg}" (node crypto has no such digest)`);
  }
}

/** A fresh challenge when a secret is configured, else the empty one that says "no secret". */
export function newChallenge(secret: string | undefined): Buffer {
  return secret ? randomBytes(CHALLENGE_BYTES) : EMPTY;
}

/** The answer `node` gives to `challenge` on `channel`. */
export function authAnswer(
  alg: string,
  secret: string,
  challenge: Uint8Array,
  node: string,
  channel: Channel,
): Buffer {
  return createHmac(alg.toLowerCase(), secret)
    .update(challenge)
    .update(node, 'utf8')
    .update(Buffer.from([0]))
    .update(channel, 'utf8')
    .digest();
}

/** Constant-time comparison of an expected answer with the one received. */
export function answerMatches(expected: Buffer, got: Uint8Array): boolean {
  if (got.length !== expected.length) return false;
  return timingSafeEqual(expected, got);
}
