import postgres from 'postgres';
const sql = postgres('postgres://postgres@127.0.0.1:5432/postgres', { max: 20, onnotice: () => {} });
let n = 0; let stop = false;
const worker = async () => { while (!stop) { await sql`SELECT 1 AS x`; n++; } };
const ws = Array.from({ length: 32 }, worker);
const cpu0 = process.cpuUsage();
for (let w = 0; w < 6; w++) {
  const n0 = n; const c0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, 5000));
  const c = process.cpuUsage(c0);
  console.log(`window ${w}: ${((n - n0) / 5).toFixed(0)} q/s, client cpu ${((c.user + c.system) / (n - n0)).toFixed(1)} µs/query`);
}
stop = true; await Promise.all(ws); await sql.end();
void cpu0;
