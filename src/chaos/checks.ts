// What must hold after every fault, checked once the load has stopped and the sweeper has
// settled whatever the fault left in flight: every acknowledged checkout is in its buyer's order
// history, read back through the API (here), and I1–I7 across every cluster (meridian verify).
import { verifyInvariants, type VerifyReport } from '../cluster/verify.ts';
import type { Databases } from '../platform/db.ts';
import type { AcknowledgedOrder, Buyer } from './load.ts';

export interface FaultCheck {
  /** Acknowledged (201) orders missing from their buyer's order history. */
  missingFromHistory: string[];
  /** `meridian verify` over every cluster: invariants with their finding counts, and the first findings. */
  verify: Pick<VerifyReport, 'ok' | 'invariants' | 'findings'>;
  ok: boolean;
}

/** Every acknowledged order, read back through the API as its buyer sees it (GET /v1/orders). */
export async function missingFromHistory(baseUrl: string, buyers: readonly Buyer[], acknowledged: readonly AcknowledgedOrder[]): Promise<string[]> {
  const byUser = new Map<string, Set<string>>();
  for (const a of acknowledged) {
    const set = byUser.get(a.userId) ?? new Set<string>();
    set.add(a.orderId);
    byUser.set(a.userId, set);
  }
  const missing: string[] = [];
  for (const buyer of buyers) {
    const expected = byUser.get(buyer.userId);
    if (!expected) continue;
    const seen = new Set<string>();
    let cursor: string | null = null;
    do {
      const url: string = `${baseUrl}/v1/orders?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const res = await fetch(url, { headers: { authorization: `Bearer ${buyer.token}` }, signal: AbortSignal.timeout(10_000) });
      if (res.status !== 200) throw new Error(`order history of ${buyer.userId}: ${res.status} ${await res.text()}`);
      const page = (await res.json()) as { items: { id: string }[]; nextCursor: string | null };
      for (const o of page.items) seen.add(o.id);
      cursor = page.nextCursor;
    } while (cursor);
    for (const id of expected) if (!seen.has(id)) missing.push(id);
  }
  return missing;
}

export async function checkAfterFault(dbs: Databases, baseUrl: string, buyers: readonly Buyer[], acknowledged: readonly AcknowledgedOrder[]): Promise<FaultCheck> {
  const missing = await missingFromHistory(baseUrl, buyers, acknowledged);
  // The load has stopped and the sweeper has had its turn: a live reservation without an order
  // older than a few seconds is a leftover, not a checkout in flight.
  const report = await verifyInvariants({ dbs }, { graceMs: 5_000, findingsMax: 20 });
  return {
    missingFromHistory: missing,
    verify: { ok: report.ok, invariants: report.invariants, findings: report.findings },
    ok: missing.length === 0 && report.ok,
  };
}
