// Money is an integer count of minor units (cents) plus an ISO 4217 currency code. Never floats.
export interface Money {
  amount: number;
  currency: string;
}

export const SUPPORTED_CURRENCIES = ['USD', 'EUR', 'GBP'] as const;
export type Currency = (typeof SUPPORTED_CURRENCIES)[number];
export const DEFAULT_CURRENCY: Currency = 'USD';

export function money(amount: number | string | bigint, currency: string): Money {
  const n = Number(amount);
  if (!Number.isSafeInteger(n)) throw new RangeError(`money amount ${String(amount)} is not a safe integer`);
  return { amount: n, currency };
}

export function multiply(unit: Money, quantity: number): Money {
  return money(unit.amount * quantity, unit.currency);
}

export function sum(items: readonly Money[], currency: string): Money {
  let total = 0;
  for (const m of items) {
    if (m.currency !== currency) throw new Error(`currency mismatch: ${m.currency} vs ${currency}`);
    total += m.amount;
  }
  return money(total, currency);
}
