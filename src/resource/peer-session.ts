/** The state of one session with a peer: from the link being up until it closes. */
import type { PeerLink } from '../replication/link.js';
import type { Receiver } from '../replication/receiver.js';
import type { ResyncSource, ResyncTarget } from '../replication/resync.js';
import type { Params, Sizes, State, Uuids } from '../replication/schema.js';
import type { TransferLog } from '../replication/transfer-log.js';

export interface Session {
  link: PeerLink;
  tl: TransferLog;
  receiver: Receiver | undefined;
  peerParams?: Params;
  peerSizes?: Sizes;
  peerUuids?: Uuids;
  peerState?: State;
  decided: boolean;
  /** Our handshake messages went out (after the old session's writes drained). */
  handshakeSent: boolean;
  bitmapSent: boolean;
  bitmapReceived: boolean;
  resyncTarget?: ResyncTarget;
  resyncSource?: ResyncSource;
  syncRole?: 'source' | 'target';
  persistTimer?: NodeJS.Timeout;
  koTimer?: NodeJS.Timeout;
  reads: Map<number, { buf: Buffer; resolve: () => void; reject: (e: Error) => void }>;
  nextReadId: number;
  /** This session's resync follows a crash of a Primary (csums-after-crash-only). */
  afterCrash?: boolean;
  /**
   * The sizes differed at the handshake and the smaller device grew to the larger (a resize
   * that reached one node only): the new area is resynced even where no bits were sent.
   */
  grewAtHandshake?: boolean;
  /** The peer disk state was UpToDate at some point of this session. */
  peerWasUpToDate: boolean;
}
