// The demo catalog a first `npm start` gets: a few hundred products with variants, categories,
// brands, and stock in two locations — made through the services, so events and search follow.
import type { Services } from '../app.ts';
import type { Id } from '../platform/ids.ts';
import { Rng } from './random.ts';
import { ADJECTIVES, BRANDS, CATEGORY_TREE, COLORS, MATERIALS, SIZES, singular } from './vocabulary.ts';

export const DEMO_LOCATIONS = [
  { id: 'eu-central', name: 'Frankfurt warehouse' },
  { id: 'us-east', name: 'New Jersey warehouse' },
] as const;

export async function catalogIsEmpty(s: Services): Promise<boolean> {
  const page = await s.catalog.listProducts({ limit: 1, cursor: undefined, currency: 'USD' });
  return page.items.length === 0;
}

async function inBatches<T>(items: readonly T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(work));
}

export async function seedDemo(s: Services, products = 300, log: (m: string) => void = () => undefined): Promise<void> {
  const rng = new Rng(2026);
  for (const l of DEMO_LOCATIONS) await s.inventory.upsertLocation(l.id, l.name);
  const brandIds: Id[] = [];
  for (const name of BRANDS) brandIds.push((await s.catalog.createBrand(name)).id);
  const leaves: { id: Id; name: string }[] = [];
  for (const [top, subs] of Object.entries(CATEGORY_TREE)) {
    const topRow = await s.catalog.createCategory(top, null);
    for (const [sub, leafNames] of Object.entries(subs)) {
      const subRow = await s.catalog.createCategory(sub, topRow.id);
      for (const leaf of leafNames) leaves.push({ id: (await s.catalog.createCategory(leaf, subRow.id)).id, name: leaf });
    }
  }
  const specs = Array.from({ length: products }, (_, i) => {
    const leaf = rng.pick(leaves);
    const brandIndex = rng.int(0, BRANDS.length - 1);
    const material = rng.pick(MATERIALS);
    const title = `${rng.pick(ADJECTIVES)} ${material[0]!.toUpperCase()}${material.slice(1)} ${singular(leaf.name)}`;
    const base = rng.int(9, 250) * 100 - 1;
    const colors = [rng.pick(COLORS), rng.pick(COLORS)].filter((c, j, a) => a.indexOf(c) === j);
    const sized = rng.next() < 0.4;
    const variants = colors.flatMap((color) =>
      (sized ? SIZES.slice(0, 2) : ['']).map((size) => ({
        sku: `DEMO-${String(i + 1).padStart(4, '0')}-${color.slice(0, 3).toUpperCase()}${size ? `-${size}` : ''}`,
        title: size ? `${color} / ${size}` : color,
        options: (size ? { Color: color, Size: size } : { Color: color }) as Record<string, string>,
        prices: [
          { amount: base, currency: 'USD' },
          { amount: Math.round(base * 0.92), currency: 'EUR' },
        ],
      })),
    );
    return {
      title,
      description: `A ${material} ${singular(leaf.name).toLowerCase()} by ${BRANDS[brandIndex]}, made to last. Available in ${colors.join(' and ')}.`,
      brandId: brandIds[brandIndex] ?? null,
      categoryId: leaf.id,
      options: [{ name: 'Color', values: colors }, ...(sized ? [{ name: 'Size', values: ['S', 'M'] }] : [])],
      attributes: { material, care: rng.pick(['machine wash', 'hand wash', 'wipe clean']) },
      popularity: rng.int(0, 10_000),
      variants,
    };
  });
  let done = 0;
  await inBatches(specs, 8, async (spec) => {
    await s.catalog.createProduct(spec);
    for (const v of spec.variants) {
      for (const l of DEMO_LOCATIONS) {
        const units = rng.int(0, 4) === 0 ? 0 : rng.int(5, 200);
        if (units > 0) await s.inventory.changeStock('receipt', v.sku, l.id, units, 'demo seed');
      }
    }
    done++;
    if (done % 50 === 0 || done === specs.length) log(`demo catalog: ${done}/${specs.length} products`);
  });
}
