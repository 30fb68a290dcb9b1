// Who reacts to which event. Each handler is idempotent: it re-reads the current state instead
// of trusting the event's payload, so repeats and reordering are harmless.
import type { OutboxRelay } from './outbox.ts';
import { staleKeysFor, type CatalogService } from '../modules/catalog/service.ts';
import type { CacheBus } from '../platform/cache.ts';
import type { InventoryService } from '../modules/inventory/service.ts';
import { searchStaleKeys, type SearchService } from '../modules/search/service.ts';

export function wireConsumers(
  relay: OutboxRelay,
  s: { catalog: CatalogService; inventory: InventoryService; search: SearchService; cacheBus: CacheBus },
): void {
  relay.subscribe('inventory.stock_changed', async (events) => {
    const skus = [...new Set(events.map((e) => String(e.payload.sku)))];
    const available = await s.inventory.availableUnits(skus);
    await s.catalog.setSkusInStock(skus.map((sku) => ({ sku, inStock: (available.get(sku) ?? 0) > 0 })));
  });
  relay.subscribe('product.changed', async (events) => {
    const productIds = [...new Set(events.map((e) => String(e.payload.productId)))];
    for (const productId of productIds) await s.search.reindexProduct(productId);
    await s.cacheBus.publish([...productIds.flatMap(staleKeysFor), ...searchStaleKeys()]);
  });
}
