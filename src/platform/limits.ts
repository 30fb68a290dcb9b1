// Every bound of the system, in one place, with the unit in the name.
export const LIMITS = {
  pageSizeMax: 100,
  pageSizeDefault: 20,
  cartLinesMax: 100,
  lineQuantityMax: 100,
  passwordLengthMin: 8,
  passwordLengthMax: 256,
  emailLengthMax: 254,
  titleLengthMax: 300,
  descriptionLengthMax: 10_000,
  skuLengthMax: 64,
  variantsPerProductMax: 100,
  attributesJsonBytesMax: 16 * 1024,
  priceAmountMax: 100_000_000_00, // 100M in minor units
  stockMovementMax: 1_000_000,
  searchQueryLengthMax: 200,
  idempotencyKeyLengthMax: 255,
  sweeperBatchMax: 500,
  /**
   * How long a young order whose reservation is not found answers 503 instead of being cancelled:
   * the reservation's commit may have raced a failover of the inventory cluster (checkout.ts).
   */
  reservationInDoubtMs: 15_000,
  outboxBatchMax: 500,
  dbStatementTimeoutMs: 10_000,
  dbLockTimeoutMs: 5_000,
  dbConnectTimeoutMs: 5_000,
  dbAcquireTimeoutMs: 10_000,
  shutdownTimeoutMs: 15_000,
  /** How long a scatter-gather waits for each shard cluster. */
  fanOutTimeoutMs: 3_000,
} as const;
