// Carts: a user's list of SKUs and quantities, priced on every read from the catalog.
import type { Databases, Sql } from '../../platform/db.ts';
import { transaction } from '../../platform/db.ts';
import { AppError } from '../../platform/errors.ts';
import { shardOfId, type Id } from '../../platform/ids.ts';
import { LIMITS } from '../../platform/limits.ts';
import { multiply, sum, type Money } from '../../platform/money.ts';
import type { CatalogService } from '../catalog/service.ts';
import * as repo from './repository.ts';

export interface CartLine {
  id: Id;
  sku: string;
  title: string | null;
  quantity: number;
  unitPrice: Money | null;
  lineTotal: Money | null;
}

export interface Cart {
  id: Id;
  status: 'open' | 'checked_out';
  currency: string;
  orderId: Id | null;
  lines: CartLine[];
  subtotal: Money;
  /** False when a line's SKU is no longer sold (archived, or no price in this currency). */
  purchasable: boolean;
  createdAt: string;
  updatedAt: string;
}

export class CartsService {
  constructor(
    private readonly dbs: Databases,
    private readonly catalog: CatalogService,
  ) {}

  async create(userId: Id, currency: string): Promise<Cart> {
    const row = await repo.insertCart(this.dbs.forId(userId), shardOfId(userId), userId, currency);
    return this.view(row, []);
  }

  async get(userId: Id, cartId: Id): Promise<Cart> {
    const { cart, lines } = await this.linesOf(userId, cartId);
    return this.view(cart, lines);
  }

  /** The raw cart and its lines, in one query (checkout prices and reserves exactly these). */
  async linesOf(userId: Id, cartId: Id): Promise<{ cart: repo.CartRow; lines: repo.CartLineRow[] }> {
    const found = await repo.findCartWithLines(this.dbs.forId(userId), userId, cartId);
    if (!found) throw new AppError('not_found', 'cart not found');
    return found;
  }

  async addLine(userId: Id, cartId: Id, sku: string, quantity: number): Promise<Cart> {
    // Price check first, outside the cart transaction: a transaction must never wait on another
    // pool's connection (on one node it is the same pool, and waiting could starve it).
    const { cart } = await this.linesOf(userId, cartId);
    const priced = await this.catalog.priceSkus([sku], cart.currency);
    if (!priced.has(sku)) throw new AppError('validation_failed', `SKU ${sku} is not for sale in ${cart.currency}`);
    await this.mutateOpenCart(userId, cartId, async (tx, _cart, lines) => {
      if (lines.length >= LIMITS.cartLinesMax) throw new AppError('cart_limit', `a cart holds at most ${LIMITS.cartLinesMax} lines`);
      await repo.insertLine(tx, shardOfId(userId), userId, cartId, sku, quantity);
    });
    return this.get(userId, cartId);
  }

  async updateLine(userId: Id, cartId: Id, lineId: Id, quantity: number): Promise<Cart> {
    await this.mutateOpenCart(userId, cartId, async (tx) => {
      if (!(await repo.updateLine(tx, userId, cartId, lineId, quantity))) throw new AppError('not_found', 'cart line not found');
    });
    return this.get(userId, cartId);
  }

  async removeLine(userId: Id, cartId: Id, lineId: Id): Promise<Cart> {
    await this.mutateOpenCart(userId, cartId, async (tx) => {
      if (!(await repo.deleteLine(tx, userId, cartId, lineId))) throw new AppError('not_found', 'cart line not found');
    });
    return this.get(userId, cartId);
  }

  /** Cart changes lock the cart row, so the line limit and the open status cannot race. */
  private async mutateOpenCart(
    userId: Id,
    cartId: Id,
    change: (tx: Sql, cart: repo.CartRow, lines: repo.CartLineRow[]) => Promise<void>,
  ): Promise<void> {
    await transaction(this.dbs.forId(userId), async (tx) => {
      const cart = await repo.findCart(tx, userId, cartId, true);
      if (!cart) throw new AppError('not_found', 'cart not found');
      if (cart.status !== 'open') throw new AppError('cart_not_open', 'this cart has been checked out');
      await change(tx, cart, await repo.findLines(tx, userId, cartId));
      await repo.touchCart(tx, cartId);
    });
  }

  // Closing a cart for an order has no method here: it is cart_close_for_order (migrations/002),
  // called by the statement that creates the order, so both commit together.
  async reopen(sql: Sql, userId: Id, cartId: Id, orderId: Id): Promise<void> {
    await repo.reopenCart(sql, userId, cartId, orderId);
  }

  private async view(cart: repo.CartRow, lines: repo.CartLineRow[]): Promise<Cart> {
    const priced = lines.length > 0 ? await this.catalog.priceSkus(lines.map((l) => l.sku), cart.currency) : new Map();
    const out: CartLine[] = lines.map((l) => {
      const p = priced.get(l.sku);
      return {
        id: l.id,
        sku: l.sku,
        title: p?.title ?? null,
        quantity: l.quantity,
        unitPrice: p?.unitPrice ?? null,
        lineTotal: p ? multiply(p.unitPrice, l.quantity) : null,
      };
    });
    return {
      id: cart.id,
      status: cart.status,
      currency: cart.currency,
      orderId: cart.order_id,
      lines: out,
      subtotal: sum(out.flatMap((l) => (l.lineTotal ? [l.lineTotal] : [])), cart.currency),
      purchasable: out.every((l) => l.unitPrice !== null),
      createdAt: cart.created_at.toISOString(),
      updatedAt: cart.updated_at.toISOString(),
    };
  }
}

