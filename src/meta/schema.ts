/**
 * The on-disk schema of a metadata store (one SQLite file per resource and node).
 *
 * Identity: the SQLite header's `application_id` is APPLICATION_ID ("urbd") and its
 * `user_version` is the format version, so both can be checked from the first 100 bytes of
 * the file, before SQLite parses anything.
 *
 * Tables (all STRICT):
 *   superblock   exactly one row (id = 1): DRBD's 4 KiB superblock (drbd.md §3.2) as columns.
 *                UUIDs are 16 upper-case hex digits (TEXT), so all 64 bits round-trip and the
 *                sqlite3 shell shows them the way get-gi prints them. `flags` holds DRBD 8.4's
 *                MDF_* bit values (superblock.ts). `clean` is DRBD's magic as a boolean:
 *                1 = "08 clean" (orderly stop), 0 = "84 unclean" (a daemon has it attached).
 *                `al_transaction` counts committed activity-log transactions.
 *   al_slot      the activity log as a slot → extent table; a slot without a row is empty.
 *                An extent can sit in one slot only (UNIQUE).
 *   bitmap_page  page number → 4096-byte BLOB of little-endian bits (bit i of the device is bit
 *                i % 8 of byte (i / 8) % 4096 of page i / 32768). No row = an all-zero page.
 */

export const FORMAT_VERSION = 1;

/** "urbd" as a big-endian 32-bit number: SQLite's `PRAGMA application_id`. */
export const APPLICATION_ID = 0x75726264;

const UUID_CHECK = (col: string): string =>
  `${col} TEXT NOT NULL CHECK (length(${col}) = 16 AND ${col} NOT GLOB '*[^0-9A-F]*')`;

export const SCHEMA_SQL = `
CREATE TABLE superblock (
  id             INTEGER PRIMARY KEY CHECK (id = 1),
  size_bytes     INTEGER NOT NULL CHECK (size_bytes >= 0),
  node_id        INTEGER NOT NULL CHECK (node_id >= 0),
  ${UUID_CHECK('device_uuid')},
  ${UUID_CHECK('current_uuid')},
  ${UUID_CHECK('bitmap_uuid')},
  ${UUID_CHECK('history0_uuid')},
  ${UUID_CHECK('history1_uuid')},
  flags          INTEGER NOT NULL CHECK (flags >= 0),
  al_extents     INTEGER NOT NULL CHECK (al_extents > 0),
  al_transaction INTEGER NOT NULL CHECK (al_transaction >= 0),
  clean          INTEGER NOT NULL CHECK (clean IN (0, 1)),
  created_at     TEXT NOT NULL
) STRICT;
CREATE TABLE al_slot (
  slot   INTEGER PRIMARY KEY CHECK (slot >= 0),
  extent INTEGER NOT NULL UNIQUE CHECK (extent >= 0)
) STRICT;
CREATE TABLE bitmap_page (
  page INTEGER PRIMARY KEY CHECK (page >= 0),
  data BLOB NOT NULL CHECK (length(data) = 4096)
) STRICT;
`;

export const TABLES = ['superblock', 'al_slot', 'bitmap_page'] as const;

export interface SuperblockRow {
  size_bytes: number;
  node_id: number;
  device_uuid: string;
  current_uuid: string;
  bitmap_uuid: string;
  history0_uuid: string;
  history1_uuid: string;
  flags: number;
  al_extents: number;
  al_transaction: number;
  clean: number;
  created_at: string;
}
