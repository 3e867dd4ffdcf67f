import assert from 'node:assert/strict';
import test from 'node:test';
import { parseReport, ReportFormatError, tally, toJunitXml } from '../../src/ci/test-report.ts';

test('TAP: ok, not ok with its YAML message, SKIP and TODO directives, subtests ignored', () => {
  const tap = [
    'TAP version 13',
    '1..4',
    '    ok 1 - a subtest, counted by its parent',
    'ok 1 - adds',
    'not ok 2 - rounds',
    '  ---',
    "  message: 'expected 12.01'",
    '  ...',
    'ok 3 - on windows # SKIP not here',
    'not ok 4 - later # TODO not written yet',
  ].join('\n');
  const r = parseReport(tap, 'http:/tests');
  assert.deepEqual(
    r.map((x) => [x.name, x.status]),
    [
      ['adds', 'pass'],
      ['rounds', 'fail'],
      ['on windows', 'skip'],
      ['later', 'pass'],
    ],
  );
  assert.equal(r[1]!.message, 'expected 12.01');
  assert.deepEqual(tally(r), { pass: 2, fail: 1, skip: 1 });
});

test('TAP: a plan with missing results, and Bail out!, are failures', () => {
  assert.equal(tally(parseReport('1..3\nok 1 - a\n', 's')).fail, 1);
  assert.equal(tally(parseReport('1..2\nok 1 - a\nBail out! database gone\n', 's')).fail, 2);
});

test('JUnit: failure, error and skipped children; classname joins the name; time in ms', () => {
  const xml = `<?xml version="1.0"?><testsuites><testsuite name="x" tests="4">
    <testcase classname="Calc" name="adds" time="0.25"/>
    <testcase classname="Calc" name="rounds &amp; floors"><failure message="1 &lt; 2">trace</failure></testcase>
    <testcase name="boom"><error>NPE</error></testcase>
    <testcase name="later"><skipped/></testcase>
  </testsuite></testsuites>`;
  const r = parseReport(xml, 'junit');
  assert.deepEqual(
    r.map((x) => [x.name, x.status, x.message ?? null]),
    [
      ['Calc.adds', 'pass', null],
      ['Calc.rounds & floors', 'fail', '1 < 2'],
      ['boom', 'fail', 'NPE'],
      ['later', 'skip', null],
    ],
  );
  assert.equal(r[0]!.durationMs, 250);
});

test('JSON shape: {"tests": [{name, status}]}; a wrong status is refused', () => {
  const r = parseReport('{"tests":[{"name":"a","status":"pass"},{"name":"b","status":"fail","message":"no"}]}', 'j', 'application/json');
  assert.deepEqual(tally(r), { pass: 1, fail: 1, skip: 0 });
  assert.throws(() => parseReport('{"tests":[{"name":"a","status":"ok"}]}', 'j'), ReportFormatError);
});

test('an answer in none of the shapes is refused with a reason', () => {
  assert.throws(() => parseReport('<html>Internal error</html>', 'http:/tests'), /neither|testsuite/);
  assert.throws(() => parseReport('Service Unavailable', 'http:/tests'), ReportFormatError);
});

test('JUnit output: escaped, one testsuite per spec, and it reads back the same', () => {
  const results = [
    { suite: 'http:/tests', name: 'a <b> & "c"', status: 'pass' as const, durationMs: 12 },
    { suite: 'http:/tests', name: 'fails', status: 'fail' as const, message: "x'y" },
    { suite: "cmd:'curl'", name: 'skipped', status: 'skip' as const },
  ];
  const xml = toJunitXml('run 1', results);
  assert.match(xml, /<testsuites name="run 1" tests="3" failures="1" skipped="1"/);
  assert.equal((xml.match(/<testsuite /g) ?? []).length, 2);
  const back = parseReport(xml, 'again');
  assert.deepEqual(
    back.map((r) => [r.name, r.status]),
    [
      ['http:/tests.a <b> & "c"', 'pass'],
      ['http:/tests.fails', 'fail'],
      ["cmd:'curl'.skipped", 'skip'],
    ],
  );
  assert.equal(back[1]!.message, "x'y");
});
