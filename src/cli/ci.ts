import type { Command } from 'commander';
import { createReadStream } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { CiRun, CiStep } from '../ci/ci-run.ts';
import { prepareSource, SourceError } from '../ci/local-source.ts';
import { parseSpec, runSpec, type TestSpec } from '../ci/test-specs.ts';
import { type TestResult, tally, toJunitXml } from '../ci/test-report.ts';
import { parseDuration } from '../core/config.ts';
import type { InstanceView } from '../api/views.ts';
import { fileArchiveType } from './archive-type.ts';
import { CliError, UsageError } from './cli-error.ts';
import { apiJson, apiRequest, readBody } from './client.ts';
import { type ClientContext, clientAction, clientCommand } from './command-kit.ts';
import { ago, formatFields, formatTable, printJson, printLine } from './output.ts';
import type { ClientSettings } from './settings.ts';

/** Exit status of `eph ci run` when the cloud or the project could not be tested at all. */
export const CI_INFRA_EXIT = 3;

type RunView = Omit<CiRun, 'userId'> & { url: string | null };

interface RunFlags {
  git?: string;
  ref?: string;
  build?: string;
  test: string[];
  promote?: string;
  junit?: string;
  keep?: boolean;
  timeout: string;
  name?: string;
  gate?: string;
  ttl?: string;
}

/** A failure of the pipeline itself (publish refused, start failed, timeout): exit 3. */
class InfraError extends CliError {
  override readonly exitCode = CI_INFRA_EXIT;
}

/** Step lines on stderr: rewritten in place on a terminal, one line each otherwise. */
class Steps {
  readonly done: CiStep[] = [];
  readonly #tty = process.stderr.isTTY === true;
  readonly #quiet: boolean;
  #name = '';
  #t0 = 0;

  constructor(quiet: boolean) {
    this.#quiet = quiet;
  }

  begin(name: string, detail = ''): void {
    this.#name = name;
    this.#t0 = Date.now();
    if (this.#quiet) return;
    process.stderr.write(this.#tty ? `… ${name}${detail ? ` ${detail}` : ''}` : `ci: ${name}${detail ? ` ${detail}` : ''}\n`);
  }

  end(status: CiStep['status'], detail?: string): void {
    const ms = Date.now() - this.#t0;
    this.done.push({ name: this.#name, status, ms, ...(detail ? { detail } : {}) });
    if (this.#quiet) return;
    const mark = status === 'ok' ? '✓' : status === 'failed' ? '✗' : '-';
    const line = `${mark} ${this.#name} (${(ms / 1000).toFixed(1)} s)${detail ? `: ${detail}` : ''}`;
    process.stderr.write(this.#tty ? `\r\x1b[K${line}\n` : `ci: ${line}\n`);
  }
}

/** The gate's address: --gate, EPH_GATE_URL, or the API's host with the gate port from the instance URL. */
function gateUrlFor(settings: ClientSettings, instanceUrl: string, flag: string | undefined): string {
  const explicit = flag ?? process.env.EPH_GATE_URL;
  if (explicit) return explicit.replace(/\/+$/, '');
  const api = new URL(settings.url);
  const inst = new URL(instanceUrl);
  return `${inst.protocol}//${api.hostname.includes(':') ? `[${api.hostname}]` : api.hostname}${inst.port ? `:${inst.port}` : ''}`;
}

function summaryTable(results: readonly TestResult[]): string {
  const suites = new Map<string, TestResult[]>();
  for (const r of results) suites.set(r.suite, [...(suites.get(r.suite) ?? []), r]);
  const rows = [...suites].map(([suite, rs]) => {
    const t = tally(rs);
    return [suite, String(rs.length), String(t.pass), String(t.fail), String(t.skip)];
  });
  const failures = results.filter((r) => r.status === 'fail').map((r) => `  ✗ ${r.suite}: ${r.name}${r.message ? ` — ${r.message}` : ''}`);
  return [formatTable(['suite', 'tests', 'passed', 'failed', 'skipped'], rows), ...(failures.length ? ['', 'failed:', ...failures] : [])].join('\n');
}

async function runPipeline(ctx: ClientContext<RunFlags>, sourcePath: string | undefined): Promise<number> {
  const o = ctx.opts;
  if (!o.test?.length) throw new UsageError('ci run: give at least one --test http:/PATH or --test cmd:COMMAND');
  let specs: TestSpec[];
  let timeoutMs: number;
  let ttlMs: number;
  try {
    specs = o.test.map(parseSpec);
    timeoutMs = parseDuration('--timeout', o.timeout);
    ttlMs = o.ttl ? parseDuration('--ttl', o.ttl) : timeoutMs + 60_000;
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  if (!sourcePath && !o.git) throw new UsageError('ci run: give a directory or an archive, or --git URL');
  const settings = ctx.settings;
  const steps = new Steps(false);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new InfraError(`timed out after ${o.timeout}`)), timeoutMs);
  timer.unref();
  let run: RunView | null = null;
  const results: TestResult[] = [];
  let promotedTo: string | null = null;

  const finish = async (status: CiRun['status'], error?: string): Promise<RunView | null> => {
    if (!run) return null;
    const body = { status, tests: results, steps: steps.done, keep: o.keep === true, ...(promotedTo ? { promotedTo } : {}), ...(error ? { error } : {}) };
    return apiJson<RunView>(settings, `/v1/ci/runs/${run.id}/finish`, { method: 'POST', json: body }).catch(() => null);
  };
  // Ctrl-C or a kill: end the run now; the server's time to live covers a client that cannot.
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`\nci: ${sig}: ending the run\n`);
    void finish('interrupted', `client received ${sig}`).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const source = await (async () => {
    steps.begin(o.git ? 'clone and build' : o.build ? 'build' : 'archive', o.git ?? sourcePath ?? '');
    try {
      const s = await prepareSource({ ...(sourcePath ? { path: sourcePath } : {}), ...(o.git ? { git: o.git } : {}), ...(o.ref ? { ref: o.ref } : {}), ...(o.build ? { build: o.build } : {}) });
      steps.end('ok', s.describe);
      return s;
    } catch (e) {
      steps.end('failed', e instanceof Error ? e.message : String(e));
      throw e instanceof SourceError ? new InfraError(e.message) : e;
    }
  })();

  try {
    const name = o.name ?? `ci ${basename(o.git ?? sourcePath ?? 'run')}`;
    // The server's clock for deleting the instance (default: the client's timeout plus a minute for the clean-up).
    run = await apiJson<RunView>(settings, '/v1/ci/runs', { method: 'POST', json: { name, ttlSeconds: Math.ceil(ttlMs / 1000) } });
    steps.begin('publish', run.id);
    try {
      const size = (await stat(source.archive)).size;
      const headers = { 'content-type': await fileArchiveType(source.archive), 'content-length': String(size), 'x-name': encodeURIComponent(name) };
      run = await apiJson<RunView>(settings, `/v1/ci/runs/${run.id}/archive`, { method: 'POST', body: createReadStream(source.archive), headers, signal: abort.signal });
      steps.end('ok', `${run.hostname} (${size} bytes)`);
    } catch (e) {
      steps.end('failed', e instanceof Error ? e.message : String(e));
      throw new InfraError(`publish refused: ${e instanceof Error ? e.message : String(e)}`);
    }
    const hostname = run.hostname!;
    steps.begin('start', hostname);
    let inst: InstanceView;
    try {
      inst = await apiJson<InstanceView>(settings, `/v1/instances/${encodeURIComponent(hostname)}/start`, { method: 'POST', signal: abort.signal });
      if (inst.state !== 'running') throw new CliError(inst.lastError ?? `it is ${inst.state}`);
      steps.end('ok');
    } catch (e) {
      steps.end('failed', e instanceof Error ? e.message : String(e));
      throw new InfraError(`${hostname} did not start: ${e instanceof Error ? e.message : String(e)}`);
    }
    const target = { hostname, gateUrl: gateUrlFor(settings, inst.url, o.gate), instanceUrl: inst.url };
    for (const spec of specs) {
      steps.begin('test', spec.raw);
      const rs = await runSpec(spec, target, abort.signal);
      if (abort.signal.aborted) throw abort.signal.reason;
      results.push(...rs);
      const t = tally(rs);
      steps.end(t.fail ? 'failed' : 'ok', `${t.pass} passed, ${t.fail} failed, ${t.skip} skipped`);
    }
    const passed = results.length > 0 && results.every((r) => r.status !== 'fail');
    if (results.length === 0) results.push({ suite: 'eph ci', name: 'no test reported', status: 'fail', message: 'the specs answered no test result' });
    if (passed && o.promote) {
      steps.begin('promote', `${o.promote} → ${hostname}`);
      try {
        await apiJson(settings, `/v1/gate/routes/${encodeURIComponent(o.promote)}`, { method: 'PUT', json: { hostname }, signal: abort.signal });
        promotedTo = o.promote;
        steps.end('ok');
      } catch (e) {
        steps.end('failed', e instanceof Error ? e.message : String(e));
        throw new InfraError(`tests passed but ${o.promote} was not promoted: ${e instanceof Error ? e.message : String(e)}`);
      }
    } else if (o.promote) {
      steps.begin('promote', o.promote);
      steps.end('skipped', 'tests failed');
    }
    const ended = (await finish(passed ? 'passed' : 'failed')) ?? run;
    await report(ctx, ended, results, o.junit);
    return passed ? 0 : 1;
  } catch (e) {
    const err = abort.signal.aborted && abort.signal.reason instanceof InfraError ? abort.signal.reason : e;
    const message = err instanceof Error ? err.message : String(err);
    const ended = await finish('error', message);
    if (ended) await report(ctx, ended, results, o.junit, true);
    if (err instanceof InfraError) throw err;
    if (err instanceof CliError) throw new InfraError(err.message);
    throw err;
  } finally {
    clearTimeout(timer);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await source.cleanup();
  }
}

async function report(ctx: ClientContext<RunFlags>, run: RunView, results: readonly TestResult[], junit: string | undefined, quietSummary = false): Promise<void> {
  if (junit) await writeFile(junit, toJunitXml(`${run.name} (${run.id})`, results));
  if (ctx.json) return printJson(run);
  if (!quietSummary || results.length) printLine(summaryTable(results));
  const t = tally(results);
  printLine(`run ${run.id}: ${run.status}, ${t.pass} passed, ${t.fail} failed, ${t.skip} skipped${run.promotedTo ? `, promoted to ${run.promotedTo}` : ''}${run.keep && run.hostname ? `, kept ${run.hostname}` : ''}`);
}

/**
 * `eph ci run|ls|show`: the testing environment (docs/ci.md).
 * @example eph ci run . --test http:/tests --promote beta.example.org --junit results.xml
 */
export function ciCommands(program: Command): void {
  const ci = program.command('ci').description('test a project on a throw-away instance: publish, test, report, promote or clean up');
  const run = clientCommand(ci, 'run [source]', 'build and publish SOURCE (directory or archive), run the tests on it, report, clean up')
    .option('--git <url>', 'clone this repository (any URL or path git reaches) instead of a local directory')
    .option('--ref <ref>', 'branch, tag or commit to check out with --git')
    .option('--build <command>', 'shell command run in the project directory; it may write the archive to $EPH_ARCHIVE')
    .option('--test <spec>', "http:/PATH (the app's own tests: TAP, JUnit XML or JSON) or cmd:'COMMAND' (run here, with EPH_INSTANCE_URL); repeatable", (v: string, prev: string[] = []) => [...prev, v])
    .option('--promote <domain>', 'on success, map this gate domain to the instance (health-checked) and keep it')
    .option('--junit <file>', 'write the results as JUnit XML')
    .option('--keep', 'keep the instance after the run')
    .option('--timeout <duration>', 'the whole run, after which it fails and the instance is deleted', '10m')
    .option('--ttl <duration>', 'time to live the server enforces: past it the instance is deleted even if this client died (default: --timeout + 1m)')
    .option('--name <name>', "the run's and the instance's name")
    .option('--gate <url>', 'where the gate listens, for http: tests (EPH_GATE_URL; default: the API host, gate port)');
  clientAction<RunFlags>(run, async (ctx, source) => {
    const status = await runPipeline(ctx, source);
    process.exitCode = status;
  });

  const ls = clientCommand(ci, 'ls', 'list your CI runs, newest first');
  clientAction(ls, async (ctx) => {
    const { runs } = await apiJson<{ runs: RunView[] }>(ctx.settings, '/v1/ci/runs');
    if (ctx.json) return printJson({ runs });
    if (runs.length === 0) return printLine('no CI runs');
    printLine(
      formatTable(
        ['id', 'status', 'name', 'tests', 'failed', 'started', 'instance'],
        runs.map((r) => [r.id, r.status, r.name, String(r.tests.length), String(tally(r.tests).fail), ago(r.createdAt), r.keep ? (r.hostname ?? '-') : '-']),
      ),
    );
  });

  const show = clientCommand(ci, 'show <id>', 'one run: steps, per-test results, log excerpt').option('--junit <file>', 'write its results as JUnit XML');
  clientAction<{ junit?: string }>(show, async (ctx, id) => {
    const r = await apiJson<RunView>(ctx.settings, `/v1/ci/runs/${encodeURIComponent(id!)}`);
    if (ctx.opts.junit) {
      const res = await apiRequest(ctx.settings, `/v1/ci/runs/${encodeURIComponent(id!)}/junit`);
      await writeFile(ctx.opts.junit, await readBody(ctx.settings.url, res.body));
    }
    if (ctx.json) return printJson(r);
    printLine(formatFields([['id', r.id], ['name', r.name], ['status', r.status], ['instance', r.hostname], ['kept', r.keep], ['promoted to', r.promotedTo], ['started', new Date(r.createdAt).toISOString()], ['error', r.error]]));
    if (r.steps.length) printLine(`\n${formatTable(['step', 'status', 'seconds', 'detail'], r.steps.map((s) => [s.name, s.status, (s.ms / 1000).toFixed(1), s.detail ?? '']))}`);
    if (r.tests.length) printLine(`\n${summaryTable(r.tests)}`);
    if (r.logExcerpt) printLine(`\nlog (end):\n${r.logExcerpt}`);
  });
}

