import type { Command } from 'commander';
import { createReadStream, createWriteStream } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseDuration } from '../core/config.ts';
import { isEphError } from '../core/errors.ts';
import type { ApplianceKind } from '../core/types.ts';
import { parsePskFile } from '../tunnel/psk-file.ts';
import { APPLIANCE_KINDS, type ApplianceView } from './appliance-view.ts';
import { CliError, UsageError } from './cli-error.ts';
import { apiJson, apiRequest, failureReason, readBody } from './client.ts';
import { clientAction, clientCommand } from './command-kit.ts';
import { countingStream } from './upload-progress.ts';
import { attachCommands } from './config.ts';
import { ago, formatFields, formatTable, printJson, printLine, show } from './output.ts';

/** The file stunnel.conf's `PSKsecrets` names and `eph tunnel --psk` reads by default. */
const DEFAULT_PSK_FILE = 'psk.txt';

const at = (name: string): string => `/v1/appliances/${encodeURIComponent(name)}`;

function applianceLine(a: ApplianceView): string {
  return `${a.name}  ${a.kind}  ${a.status}  ${a.public}`;
}

/** Polls until the appliance leaves `creating`; a `failed` one is an error naming why. */
async function waitReady(ctx: { settings: Parameters<typeof apiJson>[0] }, name: string, timeoutMs: number): Promise<ApplianceView> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 100; ; delay = Math.min(delay * 2, 1000)) {
    const a = await apiJson<ApplianceView>(ctx.settings, at(name));
    if (a.status === 'running') return a;
    if (a.status === 'failed') throw new CliError(`${name} failed to start${a.lastError ? `: ${a.lastError}` : ''}`);
    if (a.status === 'stopped') throw new CliError(`${name} is stopped; start it with \`eph appliance start ${name}\``);
    if (Date.now() + delay > deadline) throw new CliError(`${name} is still ${a.status} after ${Math.round(timeoutMs / 1000)} s`);
    await new Promise((r) => setTimeout(r, delay));
  }
}

function durationFlag(flag: string, raw: string): number {
  try {
    return parseDuration(flag, raw);
  } catch (e) {
    throw new UsageError(isEphError(e) ? e.message : String(e));
  }
}

/**
 * `eph appliance create|ls|show|start|stop|rm|backup|restore|psk|stunnel-conf`:
 * managed PostgreSQL, Redis, static files and MongoDB.
 *
 * @example
 * eph appliance create postgres mydb --wait
 * eph appliance backup mydb > dump.sql
 */
export function applianceCommands(program: Command): void {
  const appliance = program.command('appliance').description('managed databases and files, reached through TLS-PSK tunnels');

  const create = clientCommand(appliance, 'create <kind> <name>', `create an appliance: ${APPLIANCE_KINDS.join(', ')}`)
    .option('--psk-file <file>', `where to save its PSK identity, the file stunnel.conf and eph tunnel read (default ${DEFAULT_PSK_FILE} when absent)`)
    .option('--no-psk-file', 'do not save the PSK identity; print it once instead')
    .option('--wait', 'return once it is running')
    .option('--timeout <duration>', 'how long --wait waits', '120s');
  clientAction<{ wait?: boolean; timeout: string; pskFile?: string | false }>(create, async (ctx, kind, name) => {
    if (!APPLIANCE_KINDS.includes(kind as ApplianceKind)) {
      throw new UsageError(`appliance create: unknown kind '${kind}'; expected one of ${APPLIANCE_KINDS.join(', ')}`);
    }
    const timeoutMs = durationFlag('--timeout', ctx.opts.timeout);
    const exists = (f: string) => stat(f).then(() => true, () => false);
    // The key leaves the cloud once, in this answer: make sure it can be saved
    // before asking. An asked-for file is never overwritten; the default one
    // (psk.txt, what stunnel.conf names) is used only when absent.
    let pskFile: string | null = null;
    let kept = false;
    if (typeof ctx.opts.pskFile === 'string') {
      if (await exists(ctx.opts.pskFile)) throw new CliError(`--psk-file ${ctx.opts.pskFile}: the file exists; choose a new file name`);
      pskFile = ctx.opts.pskFile;
    } else if (ctx.opts.pskFile === undefined) {
      kept = await exists(DEFAULT_PSK_FILE);
      if (!kept) pskFile = DEFAULT_PSK_FILE;
    }
    const created = await apiJson<ApplianceView & { psk?: string }>(ctx.settings, '/v1/appliances', { method: 'POST', json: { kind, name } });
    const psk = created.psk;
    let saved = false;
    if (pskFile !== null && psk) {
      await writeFile(pskFile, psk, { mode: 0o600, flag: 'wx' });
      saved = true;
    }
    let a: ApplianceView & { psk?: string } = created;
    if (ctx.opts.wait && a.status !== 'running') a = { ...(await waitReady(ctx, a.name, timeoutMs)), ...(psk ? { psk } : {}) };
    if (ctx.json) return printJson(a);
    printLine(applianceLine(a));
    if (saved) printLine(`PSK identity saved to ${pskFile} (keep it: the cloud does not show the key again)`);
    else if (psk) {
      const why = kept ? `${DEFAULT_PSK_FILE} exists and was left alone; ` : '';
      printLine(`${why}PSK identity (shown once; save it in a psk.txt):\n${psk.trimEnd()}`);
    }
  });

  const ls = clientCommand(appliance, 'ls', 'list your appliances');
  clientAction(ls, async (ctx) => {
    const res = await apiJson<{ appliances: ApplianceView[] }>(ctx.settings, '/v1/appliances');
    if (ctx.json) return printJson(res);
    if (res.appliances.length === 0) return printLine('no appliances: create one with `eph appliance create postgres NAME`');
    printLine(
      formatTable(
        ['name', 'kind', 'status', 'public', 'url'],
        res.appliances.map((a) => [a.name, a.kind, a.status, show(a.public), show(a.url)]),
      ),
    );
  });

  const showCmd = clientCommand(appliance, 'show <name>', 'show one appliance, with its public endpoint and client URL');
  clientAction(showCmd, async (ctx, name) => {
    const a = await apiJson<ApplianceView>(ctx.settings, at(name!));
    if (ctx.json) return printJson(a);
    printLine(
      formatFields([
        ['name', a.name],
        ['kind', a.kind],
        ['status', a.status],
        ['public', a.public],
        ['url', a.url],
        ...(a.createdAt !== undefined ? [['created', `${show(a.createdAt)} (${ago(a.createdAt)})`] as const] : []),
        ['last error', a.lastError ?? null],
      ]),
    );
  });

  for (const verb of ['start', 'stop'] as const) {
    const cmd = clientCommand(appliance, `${verb} <name>`, `${verb} an appliance`);
    clientAction(cmd, async (ctx, name) => {
      const a = await apiJson<ApplianceView>(ctx.settings, `${at(name!)}/${verb}`, { method: 'POST' });
      if (ctx.json) return printJson(a);
      printLine(applianceLine(a));
    });
  }

  const rm = clientCommand(appliance, 'rm <name>', 'stop and delete an appliance and its data');
  clientAction(rm, async (ctx, name) => {
    // 204: no body to relay, so --json states what happened.
    const res = await apiRequest(ctx.settings, at(name!), { method: 'DELETE' });
    await res.body.dump();
    if (ctx.json) return printJson({ deleted: name });
    printLine(`deleted ${name}`);
  });

  const backup = clientCommand(appliance, 'backup <name>', 'write a backup (SQL dump, RDB file, tar) to stdout or --output').option(
    '-o, --output <file>',
    'write to this file instead of stdout',
  );
  clientAction<{ output?: string }>(backup, async (ctx, name) => {
    const out = ctx.opts.output;
    if (!out && process.stdout.isTTY) throw new UsageError(`backup: redirect it to a file (eph appliance backup ${name} > file) or use --output FILE`);
    if (!out && ctx.json) throw new UsageError('backup: --json needs --output FILE (stdout carries the backup)');
    const res = await apiRequest(ctx.settings, `${at(name!)}/backup`, { headers: { accept: '*/*' }, bodyTimeoutMs: 0 });
    const sink: Writable = out ? createWriteStream(out) : process.stdout;
    let bytes = 0;
    const counter = countingStream((n) => (bytes = n));
    try {
      // Never end process.stdout: the process ends it.
      await pipeline(res.body, counter, sink, { end: sink !== process.stdout });
    } catch (e) {
      throw new CliError(`backup of ${name} was cut: ${failureReason(e)}`);
    }
    if (ctx.json) printJson({ name, output: out, bytes });
    else if (out) process.stderr.write(`wrote ${bytes} bytes to ${out}\n`);
  });

  const restore = clientCommand(appliance, 'restore <name>', 'replace its data with a backup read from stdin or --input').option(
    '-i, --input <file>',
    'read from this file instead of stdin',
  );
  clientAction<{ input?: string }>(restore, async (ctx, name) => {
    const file = ctx.opts.input;
    if (!file && process.stdin.isTTY) throw new UsageError(`restore: feed it a backup (eph appliance restore ${name} < file) or use --input FILE`);
    let source: Readable;
    if (file) {
      // Open before sending so a missing file is reported as such.
      await stat(file).then(
        () => undefined,
        (e: NodeJS.ErrnoException) => {
          throw new CliError(`${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
        },
      );
      source = createReadStream(file);
    } else {
      source = process.stdin;
    }
    const res = await apiJson<unknown>(ctx.settings, `${at(name!)}/restore`, {
      method: 'POST',
      body: source,
      headers: { 'content-type': 'application/octet-stream' },
      bodyTimeoutMs: 0,
    });
    if (ctx.json) return printJson(res);
    printLine(`restored ${name}`);
  });

  const psk = clientCommand(appliance, 'psk <name> <file>', 'replace its PSK identities with those of a stunnel psk.txt');
  clientAction(psk, async (ctx, name, file) => {
    const text = await readFile(file!, 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new CliError(`${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
    });
    // Check here too: the line number of a typo is worth more than a round trip.
    let identities: Map<string, string>;
    try {
      identities = parsePskFile(text);
    } catch (e) {
      throw new CliError(isEphError(e) ? e.message : String(e));
    }
    const res = await apiJson<{ identities?: unknown[] }>(ctx.settings, `${at(name!)}/psk`, {
      method: 'PUT',
      body: text,
      headers: { 'content-type': 'text/plain; charset=utf-8' },
    });
    if (ctx.json) return printJson(res);
    const ids = Array.isArray(res.identities) ? res.identities.map(String) : [...identities.keys()];
    printLine(`${name}: ${ids.length} PSK ${ids.length === 1 ? 'identity' : 'identities'} (${ids.join(', ')})`);
  });

  const conf = clientCommand(appliance, 'stunnel-conf <name>', 'print the client stunnel.conf for it');
  clientAction(conf, async (ctx, name) => {
    const res = await apiRequest(ctx.settings, `${at(name!)}/stunnel.conf`, { headers: { accept: 'text/plain' } });
    const text = await readBody(ctx.settings.url, res.body);
    if (ctx.json) return printJson({ name, stunnelConf: text });
    process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  });

  attachCommands(appliance);
}
