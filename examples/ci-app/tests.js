// The app's own unit tests, run on request (GET /tests) the way a Pharo image runs its SUnit suite.
import { total, withTax } from './lib.js';

const cases = [
  ['total adds the prices', () => total([1.5, 2.5, 6]) === 10],
  ['total of nothing is 0', () => total([]) === 0],
  ['withTax rounds to cents', () => withTax(10.01, 0.2) === 12.01],
];

export function runTests() {
  return cases.map(([name, fn]) => {
    const t0 = process.hrtime.bigint();
    let ok = false;
    let message;
    try {
      ok = fn() === true;
      if (!ok) message = 'assertion failed';
    } catch (e) {
      message = String(e);
    }
    return { name, status: ok ? 'pass' : 'fail', ...(message ? { message } : {}), durationMs: Number(process.hrtime.bigint() - t0) / 1e6 };
  });
}

export function asTap(results) {
  const lines = ['TAP version 13', `1..${results.length}`];
  results.forEach((r, i) => {
    lines.push(`${r.status === 'pass' ? 'ok' : 'not ok'} ${i + 1} - ${r.name}`);
    if (r.message) lines.push('  ---', `  message: '${r.message}'`, '  ...');
  });
  return `${lines.join('\n')}\n`;
}

export function asJunit(results) {
  const esc = (s) => s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]);
  const failures = results.filter((r) => r.status === 'fail').length;
  const cases = results.map((r) => `  <testcase classname="ci-app" name="${esc(r.name)}" time="${(r.durationMs / 1000).toFixed(4)}">${r.status === 'fail' ? `<failure message="${esc(r.message)}"/>` : ''}</testcase>`);
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="ci-app" tests="${results.length}" failures="${failures}">\n${cases.join('\n')}\n</testsuite>\n`;
}
