import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { publishArchive, type Instance } from '../api.ts';
import { NoticeLine, noticeOf, type Notice } from '../ui.ts';

/** A file dropped on another page, handed to the publish page when it opens. */
let dropped: File | null = null;

/** Called by the app for a drop anywhere: the publish page takes it. */
export function takeDroppedFile(f: File): void {
  dropped = f;
}

const KB = 1024;
function size(n: number): string {
  if (n < KB) return `${n} B`;
  if (n < KB * KB) return `${(n / KB).toFixed(1)} KiB`;
  return `${(n / KB / KB).toFixed(1)} MiB`;
}

/** Item 3: drag and drop or pick an archive; progress while it uploads; the API's refusal as it wrote it. */
export function PublishPage() {
  const [progress, setProgress] = useState<{ sent: number; total: number; name: string } | null>(null);
  const [result, setResult] = useState<Instance | null>(null);
  const [notice, setNotice] = useState<Notice | null>(null);
  const [over, setOver] = useState(false);

  const publish = async (file: File): Promise<void> => {
    setResult(null);
    setNotice(null);
    setProgress({ sent: 0, total: file.size, name: file.name });
    try {
      const inst = await publishArchive(file, (sent, total) => setProgress({ sent, total, name: file.name }));
      setResult(inst);
    } catch (e) {
      setNotice(noticeOf(e));
    } finally {
      setProgress(null);
    }
  };

  useEffect(() => {
    if (dropped) {
      const f = dropped;
      dropped = null;
      void publish(f);
    }
  }, []);

  const onDrop = (e: DragEvent): void => {
    e.preventDefault();
    e.stopPropagation();
    setOver(false);
    const f = e.dataTransfer?.files[0];
    if (f) void publish(f);
  };

  return h('section', { 'aria-labelledby': 'publish-title' }, [
    h('h1', { id: 'publish-title' }, 'Publish'),
    h(
      'div',
      {
        id: 'dropzone',
        class: over ? 'dropzone over' : 'dropzone',
        onDragOver: (e: DragEvent) => {
          e.preventDefault();
          setOver(true);
        },
        onDragLeave: () => setOver(false),
        onDrop,
      },
      [
        h('p', { class: 'drop-hint' }, 'Drop an archive here (zip, tar or tar.gz holding a Pharo image or a Procfile app)'),
        h('p', null, 'or'),
        h('div', { class: 'field' }, [
          h('label', { for: 'archive' }, 'Archive'),
          h('input', {
            id: 'archive',
            type: 'file',
            accept: '.zip,.tar,.tgz,.gz,application/zip,application/x-tar,application/gzip',
            disabled: progress !== null,
            onChange: (e: Event) => {
              const input = e.currentTarget as HTMLInputElement;
              const f = input.files?.[0];
              if (f) void publish(f).then(() => (input.value = ''));
            },
          }),
        ]),
      ],
    ),
    progress
      ? h('div', { class: 'progress', role: 'status' }, [
          h('label', { for: 'upload-progress' }, `Uploading ${progress.name}: ${size(progress.sent)} of ${size(progress.total)}`),
          h('progress', { id: 'upload-progress', max: Math.max(1, progress.total), value: progress.sent }),
        ])
      : null,
    h(NoticeLine, { notice }),
    result
      ? h('p', { class: 'notice notice-ok', role: 'status', id: 'published' }, [
          'Published: ',
          h('a', { href: result.url, target: '_blank', rel: 'noopener noreferrer', class: 'new-host' }, result.hostname),
          ' — ',
          h('a', { href: '#/instances' }, 'see it among your instances'),
        ])
      : null,
  ]);
}
