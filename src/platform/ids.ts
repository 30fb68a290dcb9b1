// 64-bit, time-ordered ids that carry their logical shard (Instagram's layout):
//   41 bits milliseconds since ID_EPOCH_MS | 12 bits logical shard | 10 bits sequence
// They are generated in PostgreSQL by meridian_id(shard) (see platform/migrations), so ids are
// unique per database without coordination between API processes; this module decodes them and
// encodes synthetic ones for bulk seeding. Routing needs only shardOfId(): no lookup.
export const ID_EPOCH_MS = 1_704_067_200_000; // 2024-01-01T00:00:00Z
export const LOGICAL_SHARDS = 4096;
const SHARD_BITS = 12n;
const SEQUENCE_BITS = 10n;
const SEQUENCE_MASK = (1n << SEQUENCE_BITS) - 1n;
const SHARD_MASK = (1n << SHARD_BITS) - 1n;

/** Ids travel as decimal strings: JSON numbers lose precision above 2^53. */
export type Id = string;

const ID_PATTERN = /^[1-9][0-9]{0,18}$/;

export function isId(value: string): boolean {
  if (!ID_PATTERN.test(value)) return false;
  return BigInt(value) <= 0x7fff_ffff_ffff_ffffn;
}

export function shardOfId(id: Id): number {
  return Number((BigInt(id) >> SEQUENCE_BITS) & SHARD_MASK);
}

export function timeOfId(id: Id): Date {
  return new Date(Number(BigInt(id) >> (SHARD_BITS + SEQUENCE_BITS)) + ID_EPOCH_MS);
}

/** For bulk seeding with synthetic timestamps; live ids come from meridian_id() in SQL. */
export function encodeId(timeMs: number, shard: number, sequence: number): Id {
  if (shard < 0 || shard >= LOGICAL_SHARDS) throw new RangeError(`shard ${shard} out of range`);
  const t = BigInt(timeMs - ID_EPOCH_MS);
  return ((t << (SHARD_BITS + SEQUENCE_BITS)) | (BigInt(shard) << SEQUENCE_BITS) | (BigInt(sequence) & SEQUENCE_MASK)).toString();
}

/** Logical shard for a new user: spread evenly. (A later issue picks by home region.) */
export function pickShardForNewUser(): number {
  return Math.floor(Math.random() * LOGICAL_SHARDS);
}
