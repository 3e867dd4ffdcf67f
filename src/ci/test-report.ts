/**
 * What a test run answered, read from the three shapes `eph ci` understands, and written back out as
 * JUnit XML for any CI server. The shapes (docs/ci.md):
 * - TAP (version 12/13/14): `ok N - name`, `not ok N - name`, `# SKIP` / `# TODO` directives;
 * - JUnit XML: `<testsuite>`/`<testsuites>` with `<testcase>` children holding `<failure>`, `<error>`,
 *   `<skipped>`;
 * - JSON: `{"tests": [{"name": "...", "status": "pass"|"fail"|"skip", "message"?: "...", "durationMs"?: n}]}`.
 */
export type TestStatus = 'pass' | 'fail' | 'skip';

export interface TestResult {
  /** Which `--test` spec produced it (e.g. `http:/tests`). */
  suite: string;
  name: string;
  status: TestStatus;
  message?: string;
  durationMs?: number;
}

export class ReportFormatError extends Error {
  readonly code = 'REPORT_UNREADABLE';
}

/** The results in `text`, whichever of the three shapes it is in; throws {@link ReportFormatError} otherwise. */
export function parseReport(text: string, suite: string, contentType = ''): TestResult[] {
  const t = text.trimStart();
  if (contentType.includes('json') || t.startsWith('{')) return parseJson(t, suite);
  if (contentType.includes('xml') || t.startsWith('<')) return parseJunit(t, suite);
  if (/^(TAP version \d+|1\.\.\d+|(not )?ok\b)/m.test(t)) return parseTap(t, suite);
  throw new ReportFormatError(`${suite}: the answer is neither TAP, JUnit XML nor the JSON test shape`);
}

export function parseTap(text: string, suite: string): TestResult[] {
  const out: TestResult[] = [];
  let planned: number | null = null;
  let bailed: string | null = null;
  let last: TestResult | null = null;
  for (const line of text.split(/\r?\n/)) {
    const plan = /^1\.\.(\d+)/.exec(line);
    if (plan) planned = Number(plan[1]);
    const bail = /^Bail out!\s*(.*)$/.exec(line);
    if (bail) bailed = bail[1] || 'bailed out';
    // Only top-level results count: indented lines are subtests, reported by their parent.
    const m = /^(not )?ok\b\s*(\d+)?\s*(?:- )?([^#]*?)\s*(?:#\s*(SKIP|TODO)\b\s*(.*))?$/i.exec(line);
    if (m) {
      const directive = m[4]?.toUpperCase();
      const failed = m[1] !== undefined && directive !== 'TODO';
      last = {
        suite,
        name: m[3]?.trim() || `test ${m[2] ?? out.length + 1}`,
        status: directive === 'SKIP' ? 'skip' : failed ? 'fail' : 'pass',
        ...(m[5] ? { message: m[5].trim() } : {}),
      };
      out.push(last);
      continue;
    }
    // The YAML block after a failure carries its message.
    const msg = /^\s+(?:message|error):\s*['"]?(.*?)['"]?\s*$/.exec(line);
    if (msg && last?.status === 'fail' && last.message === undefined) last.message = msg[1];
  }
  const reported = out.length;
  if (bailed !== null) out.push({ suite, name: 'Bail out!', status: 'fail', message: bailed });
  if (planned !== null && reported < planned) {
    out.push({ suite, name: `${planned - reported} planned test(s) did not report`, status: 'fail', message: `plan 1..${planned}, ${reported} reported` });
  }
  if (out.length === 0 && planned !== 0) throw new ReportFormatError(`${suite}: TAP with no test result`);
  return out;
}

const XML_ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function unescapeXml(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|\w+);/gi, (all, e: string) => {
    if (e[0] === '#') return String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? Number.parseInt(e.slice(2), 16) : Number(e.slice(1)));
    return XML_ENTITIES[e] ?? all;
  });
}

function attr(tag: string, name: string): string | undefined {
  const m = new RegExp(`\\s${name}\\s*=\\s*("([^"]*)"|'([^']*)')`).exec(tag);
  return m ? unescapeXml(m[2] ?? m[3] ?? '') : undefined;
}

export function parseJunit(text: string, suite: string): TestResult[] {
  if (!/<testsuites?\b/.test(text)) throw new ReportFormatError(`${suite}: XML without <testsuite>`);
  const out: TestResult[] = [];
  // <testcase .../> or <testcase ...>...</testcase>; JUnit has no nested testcases.
  const re = /<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const head = m[1] ?? '';
    const body = m[3] ?? '';
    const name = [attr(head, 'classname'), attr(head, 'name')].filter(Boolean).join('.') || `test ${out.length + 1}`;
    const time = attr(head, 'time');
    const failure = /<(failure|error)\b([^>]*?)(\/>|>([\s\S]*?)<\/\1>)/.exec(body);
    const skipped = /<skipped\b/.test(body);
    const message = failure ? (attr(failure[2] ?? '', 'message') ?? unescapeXml((failure[4] ?? '').trim())) : undefined;
    out.push({
      suite,
      name,
      status: failure ? 'fail' : skipped ? 'skip' : 'pass',
      ...(message ? { message } : {}),
      ...(time !== undefined && Number.isFinite(Number(time)) ? { durationMs: Math.round(Number(time) * 1000) } : {}),
    });
  }
  if (out.length === 0 && !/tests\s*=\s*["']0["']/.test(text)) throw new ReportFormatError(`${suite}: JUnit XML with no <testcase>`);
  return out;
}

export function parseJson(text: string, suite: string): TestResult[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new ReportFormatError(`${suite}: not valid JSON`);
  }
  const tests = (doc as { tests?: unknown })?.tests;
  if (!Array.isArray(tests)) throw new ReportFormatError(`${suite}: expected {"tests": [...]}`);
  return tests.map((t, i) => {
    const o = (t ?? {}) as Record<string, unknown>;
    const status = o.status === 'pass' || o.status === 'fail' || o.status === 'skip' ? o.status : null;
    if (status === null) throw new ReportFormatError(`${suite}: tests[${i}].status must be pass, fail or skip`);
    return {
      suite,
      name: typeof o.name === 'string' && o.name ? o.name : `test ${i + 1}`,
      status,
      ...(typeof o.message === 'string' ? { message: o.message } : {}),
      ...(typeof o.durationMs === 'number' ? { durationMs: o.durationMs } : {}),
    };
  });
}

function escapeXml(s: string): string {
  // Characters XML 1.0 cannot carry are dropped rather than breaking the document.
  return s
    .replace(/[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/gu, '')
    .replace(/[<>&"']/g, (c) => `&${{ '<': 'lt', '>': 'gt', '&': 'amp', '"': 'quot', "'": 'apos' }[c]};`);
}

/** One `<testsuite>` per spec, inside `<testsuites name=runName>`. */
export function toJunitXml(runName: string, results: readonly TestResult[]): string {
  const suites = new Map<string, TestResult[]>();
  for (const r of results) suites.set(r.suite, [...(suites.get(r.suite) ?? []), r]);
  const count = (rs: readonly TestResult[], s: TestStatus) => rs.filter((r) => r.status === s).length;
  const secs = (rs: readonly TestResult[]) => (rs.reduce((a, r) => a + (r.durationMs ?? 0), 0) / 1000).toFixed(3);
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="${escapeXml(runName)}" tests="${results.length}" failures="${count(results, 'fail')}" skipped="${count(results, 'skip')}" time="${secs(results)}">`,
  ];
  for (const [suite, rs] of suites) {
    lines.push(`  <testsuite name="${escapeXml(suite)}" tests="${rs.length}" failures="${count(rs, 'fail')}" skipped="${count(rs, 'skip')}" time="${secs(rs)}">`);
    for (const r of rs) {
      const head = `    <testcase classname="${escapeXml(suite)}" name="${escapeXml(r.name)}" time="${((r.durationMs ?? 0) / 1000).toFixed(3)}"`;
      if (r.status === 'pass') lines.push(`${head}/>`);
      else if (r.status === 'skip') lines.push(`${head}><skipped${r.message ? ` message="${escapeXml(r.message)}"` : ''}/></testcase>`);
      else lines.push(`${head}><failure message="${escapeXml(r.message ?? 'failed')}"/></testcase>`);
    }
    lines.push('  </testsuite>');
  }
  lines.push('</testsuites>', '');
  return lines.join('\n');
}

/** pass/fail/skip counts. */
export function tally(results: readonly TestResult[]): Record<TestStatus, number> {
  const t = { pass: 0, fail: 0, skip: 0 };
  for (const r of results) t[r.status]++;
  return t;
}
