// Words for generated catalogs: a 3-level category tree, brands, adjectives and materials.
export const CATEGORY_TREE: Readonly<Record<string, Readonly<Record<string, readonly string[]>>>> = {
  Clothing: { Tops: ['T-Shirts', 'Shirts', 'Sweaters'], Bottoms: ['Jeans', 'Trousers', 'Shorts'], Outerwear: ['Jackets', 'Coats'] },
  Footwear: { Sneakers: ['Running Shoes', 'Court Shoes'], Boots: ['Hiking Boots', 'Chelsea Boots'], Sandals: ['Slides'] },
  Home: { Kitchen: ['Cookware', 'Knives', 'Mugs'], Living: ['Lamps', 'Cushions', 'Rugs'], Bedroom: ['Bedding', 'Pillows'] },
  Electronics: { Audio: ['Headphones', 'Speakers'], Computing: ['Keyboards', 'Mice', 'Monitors'], Phones: ['Chargers', 'Cases'] },
  Outdoors: { Camping: ['Tents', 'Sleeping Bags', 'Stoves'], Cycling: ['Helmets', 'Lights'], Climbing: ['Ropes', 'Harnesses'] },
};

export const BRANDS = [
  'Northwind', 'Acme', 'Bluefin', 'Cobalt', 'Driftwood', 'Everpeak', 'Foxglove', 'Granite', 'Harbor', 'Ironwood',
  'Juniper', 'Kestrel', 'Lumen', 'Meridian Basics', 'Nimbus', 'Oakridge', 'Pioneer', 'Quarry', 'Redtail', 'Summit',
] as const;

export const ADJECTIVES = [
  'Classic', 'Lightweight', 'Waterproof', 'Organic', 'Vintage', 'Ultralight', 'Insulated', 'Slim', 'Relaxed', 'Premium',
  'Compact', 'Wireless', 'Ergonomic', 'Recycled', 'Heavy-Duty', 'Breathable', 'Handmade', 'Modern', 'Rustic', 'Foldable',
] as const;

export const MATERIALS = ['cotton', 'wool', 'linen', 'leather', 'steel', 'bamboo', 'nylon', 'ceramic', 'aluminium', 'oak', 'cashmere', 'denim'] as const;
export const COLORS = ['Black', 'White', 'Navy', 'Olive', 'Red', 'Grey', 'Sand', 'Forest'] as const;
export const SIZES = ['S', 'M', 'L', 'XL'] as const;

/** Leaf category names without the trailing plural "s", for product titles. */
export function singular(name: string): string {
  return name.endsWith('s') && !name.endsWith('ss') ? name.slice(0, -1) : name;
}
