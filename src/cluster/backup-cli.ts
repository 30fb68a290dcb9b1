// The `meridian backup|restore|verify` commands (cli.ts dispatches here, keeping its own edits
// to one line per command). Progress goes to stderr with elapsed seconds; results to stdout.
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { buildServices } from '../app.ts';
import type { Config } from '../platform/config.ts';
import { ConfigError } from '../platform/config.ts';
import { openDatabases } from '../server.ts';
import { backupDrill, backupSchedule, createBackups, listBackups, restoreToTime, type BackupType } from './backup.ts';
import { loadTopology, type Topology } from './topology.ts';
import { formatVerifyReport, verifyInvariants, type VerifyReport } from './verify.ts';

function stamper(): (msg: string) => void {
  const started = Date.now();
  return (msg) => console.error(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${msg}`);
}

const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

function parseTime(raw: string | undefined, flag: string): Date {
  if (!raw) throw new ConfigError(`${flag} needs an ISO-8601 time, e.g. 2026-11-24T10:15:00Z`);
  // An ISO time without an offset would be read in the machine's zone: demand one.
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/.test(raw)) {
    throw new ConfigError(`${flag} must be ISO-8601 with a zone, e.g. 2026-11-24T10:15:00Z or 2026-11-24T11:15:00+01:00 (got "${raw}")`);
  }
  const d = new Date(raw);
  if (Number.isNaN(d.getTime())) throw new ConfigError(`${flag}: "${raw}" is not a valid time`);
  return d;
}

async function topologyOf(config: Config): Promise<{ file: string; topology: Topology }> {
  const file = config.topologyFile ?? 'topologies/local.yaml';
  return { file, topology: await loadTopology(file) };
}

/** verify over the configured databases (topology, DATABASE_URL or the embedded default). */
async function verifyConfigured(config: Config, log: Logger, options: { repair: boolean; graceMs: number }): Promise<VerifyReport> {
  const db = await openDatabases(config, log);
  const s = buildServices(config, db.dbs, log, { defaultMetrics: false });
  try {
    return await verifyInvariants({ dbs: db.dbs, inventory: s.inventory, saga: s.saga }, options);
  } finally {
    await s.inventory.gate.stop().catch(() => undefined);
    await db.close();
  }
}

export async function runBackupCommand(command: 'backup' | 'restore' | 'verify', rest: string[], config: Config, log: Logger): Promise<number> {
  const progress = stamper();
  if (command === 'verify') {
    const { values } = parseArgs({ args: rest, options: { repair: { type: 'boolean' }, json: { type: 'boolean' }, 'grace-ms': { type: 'string' } } });
    const graceMs = Number(values['grace-ms'] ?? 60_000);
    if (!Number.isInteger(graceMs) || graceMs < 0) throw new ConfigError('--grace-ms must be a non-negative integer');
    const report = await verifyConfigured(config, log, { repair: values.repair === true, graceMs });
    console.log(values.json ? JSON.stringify(report) : formatVerifyReport(report));
    return report.ok ? 0 : 1;
  }

  if (command === 'restore') {
    const { values } = parseArgs({ args: rest, options: { 'to-time': { type: 'string' }, force: { type: 'boolean' }, repair: { type: 'boolean' }, json: { type: 'boolean' } } });
    const target = parseTime(values['to-time'], '--to-time');
    const { file, topology } = await topologyOf(config);
    progress(`restoring every cluster of ${file} to ${target.toISOString()}`);
    const restored = await restoreToTime(topology, config.dataDir, target, progress, { force: values.force === true });
    progress(`restore done in ${restored.seconds.toFixed(1)} s; running verify${values.repair ? ' --repair' : ''}`);
    // Nothing else runs on the clusters yet (the API was stopped): no grace for in-flight checkouts.
    const report = await verifyConfigured({ ...config, topologyFile: file }, log, { repair: values.repair === true, graceMs: 0 });
    if (values.json) console.log(JSON.stringify({ restore: restored, verify: report }));
    else {
      for (const c of restored.clusters) console.log(`${c.cluster}: restored from ${c.backup} to ${restored.target}; primary ${c.primary}`);
      console.log(formatVerifyReport(report));
      if (!report.ok && !values.repair) console.log('run `meridian verify --repair` to finish or undo what was half-done at the target time');
    }
    return report.ok ? 0 : 1;
  }

  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { type: { type: 'string' }, json: { type: 'boolean' }, 'to-time': { type: 'string' } },
  });
  const action = positionals[0];
  const { file, topology } = await topologyOf(config);
  switch (action) {
    case 'create': {
      const type = (values.type ?? 'incr') as BackupType;
      if (type !== 'full' && type !== 'incr') throw new ConfigError(`--type must be full or incr, got "${values.type}"`);
      const started = Date.now();
      const done = await createBackups(topology, config.dataDir, type, progress);
      for (const d of done) console.log(`${d.cluster}\t${d.label}\t${d.seconds.toFixed(1)} s`);
      progress(`backups of ${done.length} clusters in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return 0;
    }
    case 'list': {
      const list = await listBackups(topology, config.dataDir);
      if (values.json) {
        console.log(JSON.stringify({ clusters: list }));
        return 0;
      }
      for (const c of list) {
        console.log(`${c.cluster} (stanza ${c.stanza}: ${c.status}; WAL archive ${c.walArchive.min ?? '-'} … ${c.walArchive.max ?? '-'})`);
        for (const b of c.backups) {
          console.log(`  ${b.label.padEnd(34)} ${b.type.padEnd(4)} ${b.stoppedAt}  db ${mb(b.sizeBytes).padStart(9)}  repo +${mb(b.repoSizeBytes).padStart(8)}  WAL ${b.walStart} … ${b.walStop}`);
        }
        if (c.backups.length === 0) console.log('  (no backups)');
      }
      return 0;
    }
    case 'drill': {
      const report = await backupDrill(topology, config.dataDir, progress, values['to-time'] ? { toTime: parseTime(values['to-time'], '--to-time') } : {});
      if (values.json) console.log(JSON.stringify(report));
      else {
        console.log(`drill: restored every cluster of ${file} to ${report.target} into scratch clusters (restore ${report.seconds.restore.toFixed(1)} s, drill ${report.seconds.total.toFixed(1)} s), then removed them`);
        for (const c of report.clusters) {
          console.log(`  ${c.cluster}: from backup ${c.backup}: ${Object.entries(c.rows).map(([k, v]) => `${v} ${k}`).join(', ')}; newest write ${c.latestCommitAt ?? '-'} (before the target)`);
        }
        console.log(formatVerifyReport(report.verify).replace(/^/gm, '  '));
      }
      return report.verify.ok ? 0 : 1;
    }
    case 'schedule':
      console.log(backupSchedule(topology, `cd ${process.cwd()} && MERIDIAN_DATA_DIR=${config.dataDir} npx meridian --topology ${file}`).join('\n'));
      return 0;
    default:
      console.error('usage: meridian backup create [--type full|incr] | list [--json] | drill [--to-time ISO] [--json] | schedule  [--topology FILE]');
      return 2;
  }
}
