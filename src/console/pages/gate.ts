import { h } from 'preact';
import { useState } from 'preact/hooks';
import { api, type GateRoute, type Instance, type RouteChange } from '../api.ts';
import { ActionButton, Field, NoticeLine, noticeOf, Select, usePolling, When, type Notice } from '../ui.ts';

const enc = encodeURIComponent;
const targetsText = (ts: Array<{ hostname: string; weight: number }>): string =>
  ts.length === 0 ? '(nothing)' : ts.map((t) => (ts.length > 1 ? `${t.hostname} (${t.weight})` : t.hostname)).join(', ');

/** The promotion a user most likely wants: beta.X → www.X when beta.X is routed. */
function defaultPromotion(routes: GateRoute[]): { from: string; to: string } {
  const beta = routes.find((r) => r.domain.startsWith('beta.'));
  if (beta) return { from: beta.domain, to: `www.${beta.domain.slice(5)}` };
  return { from: routes[0]?.domain ?? '', to: '' };
}

/**
 * Item 4: routes (domain → instance, health path, split), map a domain,
 * promote and roll back (each a click or three), and each route's history.
 */
export function GatePage() {
  const { data, error, reload } = usePolling(async () => {
    const [r, i] = await Promise.all([api<{ routes: GateRoute[] }>('GET', '/v1/gate/routes'), api<{ instances: Instance[] }>('GET', '/v1/instances')]);
    return { routes: r.routes, instances: i.instances };
  }, 2000);
  const [notice, setNotice] = useState<Notice | null>(null);
  const routes = data?.routes ?? [];
  const instances = data?.instances ?? [];
  const stateOf = (host: string) => instances.find((i) => i.hostname === host)?.state ?? 'unknown';
  return h('section', { 'aria-labelledby': 'gate-title' }, [
    h('h1', { id: 'gate-title' }, 'Gate'),
    h(NoticeLine, { notice: notice ?? error }),
    h('h2', null, 'Routes'),
    data === null
      ? h('p', null, 'Loading…')
      : routes.length === 0
        ? h('p', null, 'No domain is mapped yet.')
        : h(
            'ul',
            { class: 'cards', 'aria-label': 'Gate routes' },
            routes.map((r) => h(RouteCard, { key: r.domain, route: r, stateOf, reload, notify: setNotice })),
          ),
    h(MapForm, { instances, reload, notify: setNotice }),
    routes.length ? h(PromoteForm, { key: routes.map((r) => r.domain).join(' '), routes, reload, notify: setNotice }) : null,
  ]);
}

function RouteCard(props: { route: GateRoute; stateOf: (h: string) => string; reload: () => Promise<void>; notify: (n: Notice | null) => void }) {
  const { route, reload, notify } = props;
  const d = route.domain;
  const [history, setHistory] = useState<RouteChange[] | null>(null);
  const [confirm, setConfirm] = useState(false);
  const onError = (n: Notice) => notify(n);
  const loadHistory = async () => setHistory((await api<{ history: RouteChange[] }>('GET', `/v1/gate/routes/${enc(d)}/history`)).history);
  const done = (text: string) => () => {
    notify({ kind: 'ok', text });
    void reload();
    if (history) void loadHistory().catch(() => {});
  };
  const split = route.targets.length > 1;
  return h('li', { class: 'card', 'data-domain': d }, [
    h('div', { class: 'card-head' }, [h('h3', { class: 'host' }, d)]),
    h('dl', { class: 'facts' }, [
      h('dt', null, split ? 'Split' : 'Instance'),
      h(
        'dd',
        { class: 'targets' },
        route.targets.map((t) =>
          h('span', { class: 'target' }, [
            t.hostname,
            split ? ` ${t.weight}%` : '',
            ' ',
            h('span', { class: `state state-${props.stateOf(t.hostname)}` }, props.stateOf(t.hostname)),
          ]),
        ),
      ),
      h('dt', null, 'Health check'),
      h('dd', null, `GET ${route.healthPath} must answer below 500 before a switch`),
      h('dt', null, 'Changed'),
      h('dd', null, h(When, { iso: route.updatedAt })),
    ]),
    h('div', { class: 'actions' }, [
      h(ActionButton, { label: 'Roll back', busyLabel: 'Rolling back…', ariaLabel: `Roll back ${d}`, run: () => api('POST', `/v1/gate/routes/${enc(d)}/rollback`), onError, onDone: done(`${d} rolled back`) }),
      h(
        'button',
        {
          type: 'button',
          'aria-expanded': history !== null,
          'aria-label': `History of ${d}`,
          onClick: () => (history ? setHistory(null) : void loadHistory().catch((e: unknown) => notify(noticeOf(e)))),
        },
        'History',
      ),
      h('button', { type: 'button', class: 'danger', 'aria-expanded': confirm, 'aria-label': `Unmap ${d}`, onClick: () => setConfirm(!confirm) }, 'Unmap'),
    ]),
    confirm
      ? h('div', { class: 'confirm', role: 'group', 'aria-label': `Confirm unmapping ${d}` }, [
          h('p', null, `Unmap ${d}? Visitors of ${d} get "not found" until it is mapped again.`),
          h(ActionButton, { label: 'Yes, unmap', class: 'danger', ariaLabel: `Yes, unmap ${d}`, run: () => api('DELETE', `/v1/gate/routes/${enc(d)}`), onError, onDone: done(`${d} unmapped`) }),
          h('button', { type: 'button', onClick: () => setConfirm(false) }, 'Cancel'),
        ])
      : null,
    history
      ? h('div', { class: 'history' }, [
          h('h4', null, `History of ${d}`),
          history.length === 0
            ? h('p', null, 'No changes recorded.')
            : h(
                'ol',
                { class: 'history-list', 'aria-label': `History of ${d}` },
                history.map((c) =>
                  h('li', null, [h(When, { iso: c.at }), ` — ${c.action} by ${c.by}: ${targetsText(c.from)} → ${targetsText(c.to)}`]),
                ),
              ),
        ])
      : null,
  ]);
}

function MapForm(props: { instances: Instance[]; reload: () => Promise<void>; notify: (n: Notice | null) => void }) {
  const [domain, setDomain] = useState('');
  const [host, setHost] = useState('');
  const [busy, setBusy] = useState(false);
  const chosen = host || props.instances[0]?.hostname || '';
  return h(
    'form',
    {
      class: 'panel',
      'aria-labelledby': 'map-title',
      onSubmit: async (e: Event) => {
        e.preventDefault();
        const d = domain.trim();
        setBusy(true);
        props.notify({ kind: 'ok', text: `Mapping ${d}: waking ${chosen} and checking its health…` });
        try {
          await api('PUT', `/v1/gate/routes/${enc(d)}`, { hostname: chosen });
          props.notify({ kind: 'ok', text: `${d} now goes to ${chosen}` });
          setDomain('');
          await props.reload();
        } catch (err) {
          props.notify(noticeOf(err));
        } finally {
          setBusy(false);
        }
      },
    },
    [
      h('h2', { id: 'map-title' }, 'Map a domain'),
      h(Field, { id: 'map-domain', label: 'Domain', value: domain, onInput: setDomain, required: true, placeholder: 'beta.example.org' }),
      h(Select, { id: 'map-instance', label: 'Instance', value: chosen, onChange: setHost, options: props.instances.map((i) => ({ value: i.hostname, text: i.alias ? `${i.hostname} (${i.alias})` : `${i.hostname} — ${i.imageName}` })) }),
      h('button', { type: 'submit', disabled: busy || !chosen }, busy ? 'Mapping…' : 'Map'),
    ],
  );
}

function PromoteForm(props: { routes: GateRoute[]; reload: () => Promise<void>; notify: (n: Notice | null) => void }) {
  const initial = defaultPromotion(props.routes);
  const [from, setFrom] = useState(initial.from);
  const [to, setTo] = useState(initial.to);
  const [busy, setBusy] = useState(false);
  return h(
    'form',
    {
      class: 'panel',
      'aria-labelledby': 'promote-title',
      onSubmit: async (e: Event) => {
        e.preventDefault();
        setBusy(true);
        try {
          await api('POST', '/v1/gate/promote', { from, to: to.trim() });
          props.notify({ kind: 'ok', text: `${to.trim()} now serves what ${from} serves` });
          await props.reload();
        } catch (err) {
          props.notify(noticeOf(err));
        } finally {
          setBusy(false);
        }
      },
    },
    [
      h('h2', { id: 'promote-title' }, 'Promote'),
      h('p', { class: 'hint' }, 'Points the second domain at what the first serves, once the target passes its health check. Roll back to undo.'),
      h(Select, {
        id: 'promote-from',
        label: 'From',
        value: from,
        onChange: (v) => {
          setFrom(v);
          if (v.startsWith('beta.')) setTo(`www.${v.slice(5)}`);
        },
        options: props.routes.map((r) => ({ value: r.domain, text: r.domain })),
      }),
      h(Field, { id: 'promote-to', label: 'To', value: to, onInput: setTo, required: true, list: 'route-domains', placeholder: 'www.example.org' }),
      h(
        'datalist',
        { id: 'route-domains' },
        props.routes.map((r) => h('option', { value: r.domain })),
      ),
      h('button', { type: 'submit', disabled: busy || !from || !to.trim() }, busy ? 'Promoting…' : 'Promote'),
    ],
  );
}
