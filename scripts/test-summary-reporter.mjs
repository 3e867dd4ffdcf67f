// A node:test reporter that writes one JSON line per finished test (file, name, outcome, skip reason)
// to the file it is given as destination, for scripts/test.mjs to summarise skips and re-run failures.
export default async function* summaryReporter(source) {
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { name, file, skip, nesting } = event.data;
    const outcome = event.type === 'test:fail' ? 'fail' : skip !== undefined ? 'skip' : 'pass';
    yield `${JSON.stringify({ outcome, file: file ?? null, name, nesting, skip: typeof skip === 'string' ? skip : skip ? 'skipped' : null })}\n`;
  }
}
