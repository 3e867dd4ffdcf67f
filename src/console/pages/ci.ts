import { h } from 'preact';
import { useState } from 'preact/hooks';
import { api, type CiRun } from '../api.ts';
import { NoticeLine, usePolling, When } from '../ui.ts';

/** Item 6: CI runs with their status, per-test results, steps and the end of the instance's log. */
export function CiPage() {
  const { data, error } = usePolling(() => api<{ runs: CiRun[] }>('GET', '/v1/ci/runs').then((r) => r.runs), 2000);
  return h('section', { 'aria-labelledby': 'ci-title' }, [
    h('h1', { id: 'ci-title' }, 'CI runs'),
    h(NoticeLine, { notice: error }),
    data === null
      ? h('p', null, 'Loading…')
      : data.length === 0
        ? h('p', null, ['No CI runs yet. ', h('code', null, 'eph ci run'), ' records them here.'])
        : h(
            'ul',
            { class: 'cards', 'aria-label': 'CI runs' },
            data.map((r) => h(RunCard, { key: r.id, run: r })),
          ),
  ]);
}

function RunCard(props: { run: CiRun }) {
  const r = props.run;
  const [open, setOpen] = useState(false);
  const passed = r.tests.filter((t) => t.status === 'pass').length;
  return h('li', { class: 'card', 'data-run': r.id }, [
    h('div', { class: 'card-head' }, [h('h2', { class: 'host' }, r.name), h('span', { class: `state run-${r.status}`, 'data-status': r.status }, r.status)]),
    h('dl', { class: 'facts' }, [
      h('dt', null, 'Run'),
      h('dd', null, r.id),
      h('dt', null, 'Started'),
      h('dd', null, h(When, { iso: r.createdAt })),
      h('dt', null, 'Tests'),
      h('dd', null, r.tests.length ? `${passed} of ${r.tests.length} passed` : '—'),
      h('dt', null, 'Instance'),
      h('dd', null, r.url && r.hostname ? h('a', { href: r.url, target: '_blank', rel: 'noopener noreferrer' }, r.hostname) : (r.hostname ?? '—')),
      ...(r.promotedTo ? [h('dt', null, 'Promoted to'), h('dd', null, r.promotedTo)] : []),
      ...(r.error ? [h('dt', null, 'Error'), h('dd', null, r.error)] : []),
    ]),
    h('div', { class: 'actions' }, [
      h('button', { type: 'button', 'aria-expanded': open, 'aria-label': `Details of run ${r.name} (${r.id})`, onClick: () => setOpen(!open) }, open ? 'Hide details' : 'Details'),
      h('a', { class: 'button', href: `/v1/ci/runs/${encodeURIComponent(r.id)}/junit`, download: `${r.id}.xml`, 'aria-label': `JUnit report of run ${r.id}` }, 'JUnit'),
    ]),
    open
      ? h('div', { class: 'run-details' }, [
          h('h3', null, 'Steps'),
          r.steps.length
            ? h('ol', { class: 'steps' }, r.steps.map((s) => h('li', { class: `step-${s.status}` }, `${s.name}: ${s.status} (${s.ms} ms)${s.detail ? ` — ${s.detail}` : ''}`)))
            : h('p', null, '—'),
          h('h3', null, 'Tests'),
          r.tests.length
            ? h(
                'ul',
                { class: 'tests', 'aria-label': `Test results of ${r.name}` },
                r.tests.map((t) =>
                  h('li', { class: `test test-${t.status}` }, [
                    h('span', { class: `state test-status-${t.status}` }, t.status),
                    ` ${t.suite ? `${t.suite} › ` : ''}${t.name}`,
                    t.durationMs !== undefined ? ` (${t.durationMs} ms)` : '',
                    t.message ? h('div', { class: 'test-message' }, t.message) : null,
                  ]),
                ),
              )
            : h('p', null, '—'),
          h('h3', null, 'Log excerpt'),
          h('pre', { class: 'log', tabIndex: 0, 'aria-label': `Log excerpt of run ${r.id}` }, r.logExcerpt ?? '(none)'),
        ])
      : null,
  ]);
}
