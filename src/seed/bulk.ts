// Placeholder replaced by the bulk seeder (COPY-based) — see issue 2 §5.
import type { Databases } from '../platform/db.ts';

export interface BulkSeedOptions {
  users: number;
  products: number;
  orders: number;
}

export async function seedAtScale(_dbs: Databases, _options: BulkSeedOptions): Promise<void> {
  throw new Error('bulk seeding is not implemented yet');
}
