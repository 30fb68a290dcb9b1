// The order life cycle as a transition table: a move that is not listed is illegal (409).
export const ORDER_STATUSES = ['pending_payment', 'paid', 'fulfilled', 'shipped', 'delivered', 'cancelled', 'refunded'] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

export const ORDER_TRANSITIONS: Readonly<Record<OrderStatus, readonly OrderStatus[]>> = {
  pending_payment: ['paid', 'cancelled'],
  paid: ['fulfilled', 'refunded'],
  fulfilled: ['shipped', 'refunded'],
  shipped: ['delivered'],
  delivered: ['refunded'],
  cancelled: [],
  refunded: [],
};

/** Moves only the checkout saga may make: an admin cannot mark an order paid by hand. */
export const SYSTEM_ONLY_TARGETS: readonly OrderStatus[] = ['paid'];

export function canTransition(from: OrderStatus, to: OrderStatus): boolean {
  return ORDER_TRANSITIONS[from].includes(to);
}
