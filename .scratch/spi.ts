import postgres from 'postgres';
import { readFileSync } from 'node:fs';
const creds = JSON.parse(readFileSync('/tmp/runs/data-pgss/credentials.json', 'utf8'));
const sql = postgres({ host: '127.0.0.1', port: 54401, user: creds.user, password: creds.password, database: 'meridian', max: 1, onnotice: () => {} });
await sql.unsafe(`
DROP TABLE IF EXISTS spi_t; CREATE TABLE spi_t (id int primary key, a int, b int, c int, d int, e int, f int, g int, h int, i int, j int);
INSERT INTO spi_t SELECT g, 0,0,0,0,0,0,0,0,0,0 FROM generate_series(1,10) g;
CREATE OR REPLACE FUNCTION spi_many(p int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  UPDATE spi_t SET a = a + 1 WHERE id = 1; UPDATE spi_t SET a = a + 1 WHERE id = 2; UPDATE spi_t SET a = a + 1 WHERE id = 3;
  UPDATE spi_t SET a = a + 1 WHERE id = 4; UPDATE spi_t SET a = a + 1 WHERE id = 5; UPDATE spi_t SET a = a + 1 WHERE id = 6;
  UPDATE spi_t SET a = a + 1 WHERE id = 7; UPDATE spi_t SET a = a + 1 WHERE id = 8; UPDATE spi_t SET a = a + 1 WHERE id = 9;
  UPDATE spi_t SET a = a + 1 WHERE id = 10; RETURN 1;
END $$;
`);
const oneStmt = (p: number) => sql`WITH u1 AS (UPDATE spi_t SET a = a + 1 WHERE id = 1), u2 AS (UPDATE spi_t SET a = a + 1 WHERE id = 2), u3 AS (UPDATE spi_t SET a = a + 1 WHERE id = 3),
 u4 AS (UPDATE spi_t SET a = a + 1 WHERE id = 4), u5 AS (UPDATE spi_t SET a = a + 1 WHERE id = 5), u6 AS (UPDATE spi_t SET a = a + 1 WHERE id = 6),
 u7 AS (UPDATE spi_t SET a = a + 1 WHERE id = 7), u8 AS (UPDATE spi_t SET a = a + 1 WHERE id = 8), u9 AS (UPDATE spi_t SET a = a + 1 WHERE id = 9),
 u10 AS (UPDATE spi_t SET a = a + 1 WHERE id = 10) SELECT ${p}::int AS x`;
const fn = (p: number) => sql`SELECT spi_many(${p}) AS x`;
const noop = (p: number) => sql`SELECT ${p}::int AS x`;
async function time(name: string, f: (p: number) => Promise<unknown>) {
  for (let i = 0; i < 300; i++) await f(i);
  const pid = (await sql`SELECT pg_backend_pid() AS p`)[0]!.p;
  const cpu = () => { const s = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' '); return (Number(s[11]) + Number(s[12])) * 10; };
  const c0 = cpu(); const t0 = performance.now();
  const N = 3000;
  for (let i = 0; i < N; i++) await f(i);
  const t = performance.now() - t0; const c = cpu() - c0;
  console.log(`${name}: ${(t / N * 1000).toFixed(0)} µs wall, backend cpu ${(c / N * 1000).toFixed(0)} µs per call`);
}
for (let r = 0; r < 2; r++) { await time('noop', noop); await time('plpgsql 10 stmts', fn); await time('one stmt 10 CTEs', oneStmt); }
await sql`DROP TABLE spi_t CASCADE`; await sql`DROP FUNCTION spi_many`;
await sql.end();
