import { h, type ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api.ts';

/** Messages of the page: errors as alerts (read out at once), successes as status (read out politely). */
export interface Notice {
  kind: 'error' | 'ok';
  text: string;
}

export function noticeOf(e: unknown): Notice {
  if (e instanceof ApiError) return { kind: 'error', text: e.code && e.code !== 'NETWORK' ? `${e.message} (${e.code})` : e.message };
  return { kind: 'error', text: e instanceof Error ? e.message : String(e) };
}

export function NoticeLine(props: { notice: Notice | null }) {
  const n = props.notice;
  if (!n) return null;
  return h('p', { class: `notice notice-${n.kind}`, role: n.kind === 'error' ? 'alert' : 'status' }, n.text);
}

/** A labelled input: the label names it for screen readers and clicks. */
export function Field(props: {
  id: string;
  label: string;
  value: string;
  onInput: (v: string) => void;
  type?: string;
  required?: boolean;
  placeholder?: string;
  autocomplete?: string;
  list?: string;
}) {
  return h('div', { class: 'field' }, [
    h('label', { for: props.id }, props.label),
    h('input', {
      id: props.id,
      name: props.id,
      type: props.type ?? 'text',
      value: props.value,
      required: props.required,
      placeholder: props.placeholder,
      autocomplete: props.autocomplete ?? 'off',
      spellcheck: false,
      list: props.list,
      onInput: (e: Event) => props.onInput((e.currentTarget as HTMLInputElement).value),
    }),
  ]);
}

export function Select(props: { id: string; label: string; value: string; options: Array<{ value: string; text: string }>; onChange: (v: string) => void }) {
  return h('div', { class: 'field' }, [
    h('label', { for: props.id }, props.label),
    h(
      'select',
      { id: props.id, name: props.id, value: props.value, onChange: (e: Event) => props.onChange((e.currentTarget as HTMLSelectElement).value) },
      props.options.map((o) => h('option', { value: o.value }, o.text)),
    ),
  ]);
}

/** Runs `load` now and every `everyMs` while mounted (the page stays current without a reload). */
export function usePolling<T>(load: () => Promise<T>, everyMs: number): { data: T | null; error: Notice | null; reload: () => Promise<void> } {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<Notice | null>(null);
  const loadRef = useRef(load);
  loadRef.current = load;
  const reload = async (): Promise<void> => {
    try {
      setData(await loadRef.current());
      setError(null);
    } catch (e) {
      setError(noticeOf(e));
    }
  };
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async (): Promise<void> => {
      // Not while the tab is hidden: nobody looks, and the cloud has better things to do.
      if (document.visibilityState !== 'hidden') await reload();
      if (!stopped) timer = setTimeout(() => void tick(), everyMs);
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, []);
  return { data, error, reload };
}

export function When(props: { iso: string | number | null }) {
  if (props.iso === null || props.iso === '') return h('span', null, '—');
  const d = new Date(props.iso);
  if (Number.isNaN(d.getTime())) return h('span', null, String(props.iso));
  return h('time', { dateTime: d.toISOString(), title: d.toISOString() }, `${d.toLocaleString()} (${ago(d)})`);
}

function ago(d: Date): string {
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  if (s < 5) return 'just now';
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

/** A definition list of label → value rows. */
export function Facts(props: { rows: Array<[string, ComponentChildren]> }) {
  return h('dl', { class: 'facts' }, props.rows.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

/** Copies text: the Clipboard API where the page is a secure context, else a selected text area. */
export async function copyText(text: string): Promise<void> {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const ta = document.createElement('textarea');
  ta.value = text;
  ta.setAttribute('aria-hidden', 'true');
  ta.className = 'offscreen';
  document.body.appendChild(ta);
  ta.select();
  const ok = document.execCommand('copy');
  ta.remove();
  if (!ok) throw new Error('the browser refused to copy; select the text and copy it by hand');
}

/** A button that runs an action, shows it busy meanwhile and reports its failure to `onError`. */
export function ActionButton(props: {
  label: string;
  busyLabel?: string;
  ariaLabel?: string;
  class?: string;
  run: () => Promise<unknown>;
  onError: (n: Notice) => void;
  onDone?: () => void;
  disabled?: boolean;
}) {
  const [busy, setBusy] = useState(false);
  return h(
    'button',
    {
      type: 'button',
      class: props.class,
      'aria-label': props.ariaLabel,
      disabled: props.disabled || busy,
      'aria-busy': busy ? 'true' : undefined,
      onClick: async () => {
        setBusy(true);
        try {
          await props.run();
          props.onDone?.();
        } catch (e) {
          props.onError(noticeOf(e));
        } finally {
          setBusy(false);
        }
      },
    },
    busy ? (props.busyLabel ?? `${props.label}…`) : props.label,
  );
}
